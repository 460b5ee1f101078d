"""Ids to vectors: token and positional tables (random as ``torch.manual_seed(SEED);
nn.Embedding(...)`` makes them, or loaded from a checkpoint), the lookup streamed to disk, and
the processes of a ``torchrun`` writing one file together. The only layer that needs torch."""
