"""The reference pipeline of "LLMs from scratch", chapter 2, written plainly (as the book does).

Tests and benchmarks compare embedcli against this code; it is deliberately not optimised.
"""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader, Dataset


class GPTDatasetV1(Dataset):
    def __init__(self, token_ids, max_length, stride):
        self.input_ids = []
        self.target_ids = []
        for i in range(0, len(token_ids) - max_length, stride):
            input_chunk = token_ids[i : i + max_length]
            target_chunk = token_ids[i + 1 : i + max_length + 1]
            self.input_ids.append(torch.tensor(input_chunk))
            self.target_ids.append(torch.tensor(target_chunk))

    def __len__(self):
        return len(self.input_ids)

    def __getitem__(self, idx):
        return self.input_ids[idx], self.target_ids[idx]


def create_dataloader_v1(
    token_ids, batch_size=4, max_length=256, stride=128, shuffle=True, drop_last=True
):
    dataset = GPTDatasetV1(token_ids, max_length, stride)
    return DataLoader(
        dataset, batch_size=batch_size, shuffle=shuffle, drop_last=drop_last, num_workers=0
    )


def reference_windows(
    token_ids, *, batch_size, max_length, stride, drop_last=True, num_batches=None
):
    """(inputs, targets) of all batches concatenated, as the DataLoader yields them."""
    loader = create_dataloader_v1(
        list(token_ids),
        batch_size=batch_size,
        max_length=max_length,
        stride=stride,
        shuffle=False,
        drop_last=drop_last,
    )
    inputs, targets = [], []
    for k, (x, y) in enumerate(loader):
        if num_batches is not None and k >= num_batches:
            break
        inputs.append(x)
        targets.append(y)
    if not inputs:
        return torch.zeros(0, max_length, dtype=torch.long), torch.zeros(
            0, max_length, dtype=torch.long
        )
    return torch.cat(inputs), torch.cat(targets)


def reference_embeddings(
    token_ids,
    *,
    vocab_size,
    dim,
    batch_size,
    max_length,
    stride,
    seed=123,
    context_length=None,
    drop_last=True,
):
    """The chapter's embedding step over every batch: tok(x) + pos(arange(T)), concatenated."""
    torch.manual_seed(seed)
    token_embedding_layer = torch.nn.Embedding(vocab_size, dim)
    pos_embedding_layer = torch.nn.Embedding(context_length or max_length, dim)
    loader = create_dataloader_v1(
        list(token_ids),
        batch_size=batch_size,
        max_length=max_length,
        stride=stride,
        shuffle=False,
        drop_last=drop_last,
    )
    out = []
    with torch.no_grad():
        for x, _ in loader:
            token_embeddings = token_embedding_layer(x)
            pos_embeddings = pos_embedding_layer(torch.arange(max_length))
            out.append(token_embeddings + pos_embeddings)
    return (
        torch.cat(out),
        token_embedding_layer.weight.detach(),
        pos_embedding_layer.weight.detach(),
    )
