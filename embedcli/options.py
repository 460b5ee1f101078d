"""What each stage can be asked to do: every choice, its type and its default, in one place.

The bottom layer of the library: it imports nothing of embedcli, so the CLI builds its option
types and ``--help`` from these names without importing the modules that implement them, and
the library's option dataclasses are typed by them. Each choice is a ``Literal`` type with the
tuple of its values beside it (the tuple is what the CLI and the run-time checks read; mypy
checks the two agree through :func:`typing.get_args` in ``tests/test_layout.py``).

Example:
    >>> WindowOptions(max_length=4, stride=4, batch_size=8).effective_max_length
    4
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = [
    "TOKEN_INPUT_FORMATS",
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
    "OUTPUT_DTYPES",
    "POS_KINDS",
    "SPECIAL_POLICIES",
    "Backend",
    "EmbedOptions",
    "EotPlacement",
    "FloatDtype",
    "IdsDtype",
    "PosKind",
    "SpecialPolicy",
    "TokenizeOptions",
    "WindowOptions",
]

# What a literal <|endoftext|> in the text is: the special token, plain text, or an error.
SpecialPolicy = Literal["special", "text", "error"]
SPECIAL_POLICIES: tuple[SpecialPolicy, ...] = ("special", "text", "error")
# The engine that encodes: gigatoken when installed and checked, else tiktoken.
Backend = Literal["auto", "tiktoken", "gigatoken"]
BACKENDS: tuple[Backend, ...] = ("auto", "tiktoken", "gigatoken")
# Where tokenize puts <|endoftext|>.
EotPlacement = Literal["between", "after", "before", "none"]
EOT_MODES: tuple[EotPlacement, ...] = ("between", "after", "before", "none")
# Positional embeddings.
PosKind = Literal["learned", "sinusoidal", "none"]
POS_KINDS: tuple[PosKind, ...] = ("learned", "sinusoidal", "none")
# Embeddings' dtype.
FloatDtype = Literal["float32", "float16", "bfloat16"]
FLOAT_DTYPES: tuple[FloatDtype, ...] = ("float32", "float16", "bfloat16")
# batch's inputs and targets.
IdsDtype = Literal["int64", "int32"]
OUTPUT_DTYPES: tuple[IdsDtype, ...] = ("int64", "int32")

DEFAULT_ENCODING = "gpt2"
DEFAULT_SEED = 123  # the book's torch.manual_seed(123)
DEFAULT_MAX_LENGTH = 256
DEFAULT_BATCH_SIZE = 1  # the DataLoader's default: every full window is kept
DEFAULT_DIM = 256
DEFAULT_TEXT_KEY = "text"
DEFAULT_TOKEN_KEY = "ids"
DEFAULT_DEVICE = "cpu"
DEVICES = ("cpu", "cuda", "cuda:N", "mps", "auto")  # for help text; cuda:N takes any index


# Token file formats batch's and embed's ``--format`` can name: those one stream holds (a
# Megatron dataset is two files), so a pipe can be read as one (nanoGPT's raw ids have no magic).
TOKEN_INPUT_FORMATS = ("nanogpt", "llmc", "npy")


@dataclass(kw_only=True)
class TokenizeOptions:
    """How text becomes ids (``tokenize``, and ``batch``/``embed`` given text)."""

    encoding: str = DEFAULT_ENCODING  # a tiktoken name, or file:/abs/path (--tokenizer)
    special: SpecialPolicy | None = None  # None: the output format's own (text for trainers')
    backend: Backend = "auto"  # auto: gigatoken when installed and checked, else tiktoken
    text_key: str = DEFAULT_TEXT_KEY
    # a document format's name (documents.FORMATS); for batch and embed also a token file
    # format the input is read as (inputs.TOKEN_INPUT_FORMATS: nanogpt, llmc, npy)
    format: str = "auto"
    workers: int | None = None  # encoding processes (threads where forking is unsafe)
    eot: EotPlacement | None = None  # between, after, before, none; None: the output format's own
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
    dtype: IdsDtype = "int64"
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
    pos: PosKind | None = None  # None: learned, or none for a checkpoint with no position table
    device: str = DEFAULT_DEVICE
    dtype: FloatDtype | None = None  # None: the --weights table's (bf16 stays bf16), else float32
    weights: str | None = None
    token_key: str | None = None
    pos_key: str | None = None
    save_weights: bool = True
    max_shard_size: int | None = None  # bytes per output file; None: one file

    @property
    def output_dtype(self) -> FloatDtype:
        """The dtype of the tables and the output, once resolved."""
        return self.dtype or "float32"

    @property
    def pos_kind(self) -> PosKind:
        """The positional table, once resolved."""
        return self.pos or "learned"
