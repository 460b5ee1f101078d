"""What each stage can be asked to do: every choice and default in one place.

The CLI builds its option types and defaults from these names, and the library's option
dataclasses use them too, so a choice added here appears in ``--help`` and in the API at once.
Each tuple of choices is defined by the module that implements it and re-exported here, except
the ids dtypes, defined here so that ``--help`` never imports numpy (``windows.py`` does).

Example:
    >>> WindowOptions(max_length=4, stride=4, batch_size=8).effective_max_length
    4
"""

from __future__ import annotations

from dataclasses import dataclass

from .backends import BACKENDS
from .embedding import FLOAT_DTYPES, POS_KINDS
from .encoding import DEFAULT_ENCODING, SPECIAL_POLICIES
from .text import FORMATS

__all__ = [
    "BACKENDS",
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_DEVICE",
    "DEFAULT_DIM",
    "DEFAULT_ENCODING",
    "DEFAULT_MAX_LENGTH",
    "DEFAULT_SEED",
    "DEFAULT_TEXT_KEY",
    "DEFAULT_TOKEN_KEY",
    "DEVICES",
    "EOT_MODES",
    "FLOAT_DTYPES",
    "FORMATS",
    "OUTPUT_DTYPES",
    "POS_KINDS",
    "SPECIAL_POLICIES",
    "EmbedOptions",
    "TokenizeOptions",
    "WindowOptions",
]

OUTPUT_DTYPES = ("int64", "int32")  # of batch's inputs and targets
EOT_MODES = ("between", "after", "before", "none")  # where tokenize puts <|endoftext|>

DEFAULT_SEED = 123  # the book's torch.manual_seed(123)
DEFAULT_MAX_LENGTH = 256
DEFAULT_BATCH_SIZE = 1  # the DataLoader's default: every full window is kept
DEFAULT_DIM = 256
DEFAULT_TEXT_KEY = "text"
DEFAULT_TOKEN_KEY = "ids"
DEFAULT_DEVICE = "cpu"
DEVICES = ("cpu", "cuda", "cuda:N", "mps", "auto")  # for help text; cuda:N takes any index


@dataclass(kw_only=True)
class TokenizeOptions:
    """How text becomes ids (``tokenize``, and ``batch``/``embed`` given text)."""

    encoding: str = DEFAULT_ENCODING
    special: str = SPECIAL_POLICIES[0]
    backend: str = BACKENDS[0]  # auto: gigatoken when installed and checked, else tiktoken
    text_key: str = DEFAULT_TEXT_KEY
    format: str = FORMATS[0]
    workers: int | None = None  # encoding processes (threads where forking is unsafe)
    eot: str | None = None  # between, after, before, none; None: the output format's own
    include: tuple[str, ...] = ()  # globs choosing the files a directory gives
    split_on_eot: bool = False  # a literal <|endoftext|> ends a document


@dataclass(kw_only=True)
class WindowOptions:
    """How ids become windows (``batch``, and ``embed`` given text or tokens).

    ``None`` means "not given": the default applies, and an already-windowed input can tell a
    request it cannot honour from a default.
    """

    max_length: int | None = None
    stride: int | None = None
    batch_size: int | None = None
    drop_last: bool = True
    num_batches: int | None = None
    shuffle: bool = False
    seed: int = DEFAULT_SEED
    cross_docs: bool = True
    dtype: str = OUTPUT_DTYPES[0]
    batched: bool = False  # (K, B, T) tensors instead of (N, T): the same bytes

    @property
    def effective_max_length(self) -> int:
        return self.max_length or DEFAULT_MAX_LENGTH

    def given(self) -> list[str]:
        """Windowing options set explicitly (they cannot apply to already-windowed input).

        Named as on the command line, the form a user recognises in a message.
        """
        names = {
            "max_length": "--max-length",
            "stride": "--stride",
            "batch_size": "--batch-size",
            "num_batches": "--num-batches",
        }
        out = [flag for attr, flag in names.items() if getattr(self, attr) is not None]
        if self.shuffle:
            out.append("--shuffle")
        if not self.cross_docs:
            out.append("--no-cross-docs")
        return out


@dataclass(kw_only=True)
class EmbedOptions:
    """How windows become embeddings (``embed``)."""

    dim: int | None = None  # default: DEFAULT_DIM, or the loaded table's
    vocab_size: int | None = None  # default: the encoding's, from the input's metadata
    context_length: int | None = None  # default: max_length
    seed: int = DEFAULT_SEED
    pos: str = POS_KINDS[0]
    device: str = DEFAULT_DEVICE
    dtype: str = FLOAT_DTYPES[0]
    weights: str | None = None
    token_key: str | None = None
    pos_key: str | None = None
    save_weights: bool = True
    max_shard_size: int | None = None  # bytes per output file; None: one file
