"""Four tokenizers behind one interface: ``char``, ``byte``, byte-level ``bpe`` and a model's ``pretrained`` one.

Each is trained (or not) on the train split only, saved into the dataset directory and loaded back by the
reader. ``encode_array`` is the fast path used to tokenize whole corpora; ``encode`` / ``decode`` serve
prompts and samples. ``decode(encode(x)) == x`` for the first three (char: except characters unseen in training,
which decode as U+FFFD) and for a pretrained tokenizer without a normalizer (GPT-2's and Llama's byte-level ones).

Text handed to the byte tokenizer may carry undecodable bytes as lone surrogates ("surrogateescape"), so a
corpus that is not UTF-8 still round-trips byte for byte.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from data_pipeline.config import BPE_BASE_ALPHABET, TokenizerConfig
from textune import strict_json
from textune.errors import TextuneError

if TYPE_CHECKING:
    import tokenizers  # Hugging Face's, imported lazily: only BPE needs it

TOKENIZER_FILE = "tokenizer.json"
UNKNOWN_CHAR = "\ufffd"
_SURROGATE = re.compile("[\ud800-\udfff]")
_CHUNK_CHARS = 1 << 16  # BPE works on ~64 KiB pieces cut at newlines: many pieces keep all cores busy


class Tokenizer(Protocol):
    """What every tokenizer offers, and all that models (training, generation, checkpoints) use of one.

    ``kind`` names it in the manifest and checkpoints; ids are ``0 <= id < vocab_size``.
    """

    kind: str
    vocab_size: int

    def encode(self, text: str) -> list[int]:
        """The ids of ``text`` (a prompt)."""

    def encode_array(self, text: str) -> np.ndarray:
        """The ids of ``text`` as an unsigned integer array (T,): the fast path for whole corpora."""

    def decode(self, ids: Sequence[int] | np.ndarray) -> str:
        """The text of ``ids``; an undecodable byte is a lone surrogate (byte) or U+FFFD (char, bpe)."""

    def save(self, directory: Path) -> None:
        """Write the tokenizer into ``directory`` (``TOKENIZER_FILE``), for :func:`load_tokenizer`."""


class CharTokenizer:
    """Id 0 is reserved for characters not seen in the train split; ids 1.. follow code-point order."""

    kind = "char"

    def __init__(self, chars: str) -> None:
        self.chars = chars
        self.vocab_size = len(chars) + 1
        code_points = np.frombuffer(chars.encode("utf-32-le"), dtype=np.uint32)
        # id_of[code point] -> id; a dense table makes encoding one vectorised gather.
        self.id_of = np.zeros(int(code_points.max(initial=0)) + 1, dtype=np.uint32)
        self.id_of[code_points] = np.arange(1, len(chars) + 1, dtype=np.uint32)

    @classmethod
    def train(cls, text: str) -> CharTokenizer:
        code_points = _code_points(text)
        seen = np.flatnonzero(np.bincount(code_points)) if code_points.size else np.array([], dtype=np.int64)
        return cls("".join(map(chr, seen)))

    def encode_array(self, text: str) -> np.ndarray:
        code_points = _code_points(text)
        known = code_points < self.id_of.size
        ids = np.zeros(code_points.shape, dtype=np.uint32)
        ids[known] = self.id_of[code_points[known]]
        return ids

    def encode(self, text: str) -> list[int]:
        return self.encode_array(text).tolist()

    def decode(self, ids: Sequence[int] | np.ndarray) -> str:
        table = UNKNOWN_CHAR + self.chars
        return "".join(table[i] for i in np.asarray(ids, dtype=np.int64).tolist())

    def save(self, directory: Path) -> None:
        _write_json(directory / TOKENIZER_FILE, {"kind": self.kind, "chars": self.chars})


class ByteTokenizer:
    """The 256 byte values of the UTF-8 encoding; nothing to train."""

    kind = "byte"
    vocab_size = 256

    @classmethod
    def train(cls, text: str) -> ByteTokenizer:
        return cls()

    def encode_array(self, text: str) -> np.ndarray:
        return np.frombuffer(text.encode("utf-8", "surrogateescape"), dtype=np.uint8)

    def encode(self, text: str) -> list[int]:
        return self.encode_array(text).tolist()

    def decode(self, ids: Sequence[int] | np.ndarray) -> str:
        return bytes(np.asarray(ids, dtype=np.uint8)).decode("utf-8", "surrogateescape")

    def save(self, directory: Path) -> None:
        _write_json(directory / TOKENIZER_FILE, {"kind": self.kind})


class BpeTokenizer:
    """Byte-level BPE (GPT-2 style pre-tokenization) from Hugging Face ``tokenizers``; lossless on UTF-8."""

    kind = "bpe"

    def __init__(self, backend: tokenizers.Tokenizer) -> None:
        self.backend = backend
        self.vocab_size = backend.get_vocab_size()

    @classmethod
    def train(cls, text: str, vocab_size: int) -> BpeTokenizer:
        import tokenizers
        from tokenizers import decoders, models, pre_tokenizers, trainers

        backend = tokenizers.Tokenizer(models.BPE())
        # No prefix space: the decoder must give back exactly the input, first character included.
        backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        backend.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size, show_progress=False, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
        )
        backend.train_from_iterator(_chunks(text), trainer=trainer, length=None)
        return cls(backend)

    def encode_array(self, text: str) -> np.ndarray:
        # encode_batch_fast skips the character offsets we never use.
        encodings = self.backend.encode_batch_fast(list(_chunks(text)), add_special_tokens=False)
        parts = [np.asarray(e.ids, dtype=np.uint32) for e in encodings]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.uint32)

    def encode(self, text: str) -> list[int]:
        # Bytes that are not UTF-8 (a prompt read with surrogateescape) become U+FFFD, as the char tokenizer
        # maps them to its unknown id: the backend takes valid Unicode only.
        return self.backend.encode(printable(text), add_special_tokens=False).ids

    def decode(self, ids: Sequence[int] | np.ndarray) -> str:
        return self.backend.decode(np.asarray(ids, dtype=np.int64).tolist(), skip_special_tokens=False)

    def save(self, directory: Path) -> None:
        self.backend.save(str(directory / TOKENIZER_FILE))


class PretrainedTokenizer(BpeTokenizer):
    """A model's own tokenizer, read from its ``tokenizer.json`` (Hugging Face ``tokenizers``), never trained.

    Encoding adds no special tokens, so the shards hold the text's tokens only; decoding keeps every token.
    """

    kind = "pretrained"

    @classmethod
    def load(cls, path: str | Path) -> PretrainedTokenizer:
        import tokenizers

        file = pretrained_tokenizer_file(path)
        try:
            return cls(tokenizers.Tokenizer.from_file(str(file)))
        except Exception as exc:  # the tokenizers library reports a malformed file as a plain Exception
            raise TextuneError(
                f'data.tokenizer.path "{path}": {file} is not a tokenizers file: '
                f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}.",
                "Give the directory a model and its tokenizer were saved to (save_pretrained), "
                "or the tokenizer.json in it.",
            ) from exc


def pretrained_tokenizer_file(path: str | Path) -> Path:
    """The ``tokenizer.json`` that ``data.tokenizer.path`` names: that file, or the one in that directory."""
    given = Path(path).expanduser()
    file = given / TOKENIZER_FILE if given.is_dir() else given
    if not file.is_file():
        raise TextuneError(
            f'data.tokenizer.path "{path}" holds no {TOKENIZER_FILE}'
            + (" (it does not exist)." if not given.exists() else "."),
            "Give the directory a model and its tokenizer were saved to (save_pretrained), or the "
            "tokenizer.json in it (`textune data prepare`: --tokenizer-path); textune never fetches one from a hub.",
        )
    return file


def printable(text: str) -> str:
    """``text`` as valid Unicode: every undecodable byte (a lone surrogate, see the module docstring) becomes
    U+FFFD, so it can be printed to a strict UTF-8 stream or written to a UTF-8 file."""
    if not _SURROGATE.search(text):
        return text
    escaped = _SURROGATE.sub(lambda m: m.group() if "\udc80" <= m.group() <= "\udcff" else UNKNOWN_CHAR, text)
    return escaped.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def train_tokenizer(config: TokenizerConfig, train_text: str) -> Tokenizer:
    """Fit the configured tokenizer on the train split."""
    if config.kind == "char":
        return CharTokenizer.train(train_text)
    if config.kind == "byte":
        return ByteTokenizer.train(train_text)
    if config.kind == "pretrained":
        assert config.path is not None  # checked by the config
        return PretrainedTokenizer.load(config.path)
    assert config.vocab_size is not None and config.vocab_size >= BPE_BASE_ALPHABET  # checked by the config
    return BpeTokenizer.train(train_text, config.vocab_size)


def load_tokenizer(directory: Path, kind: str) -> Tokenizer:
    """The ``kind`` tokenizer saved in a dataset directory."""
    path = directory / TOKENIZER_FILE
    if kind in ("bpe", "pretrained"):
        import tokenizers

        backend = tokenizers.Tokenizer.from_file(str(path))
        return BpeTokenizer(backend) if kind == "bpe" else PretrainedTokenizer(backend)
    if kind == "byte":
        return ByteTokenizer()
    return CharTokenizer(json.loads(path.read_text(encoding="utf-8"))["chars"])


def _code_points(text: str) -> np.ndarray:
    return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)


def _chunks(text: str) -> Iterator[str]:
    """~64 KiB pieces of ``text`` ending at a newline where one is near, so words stay whole."""
    start = 0
    while start < len(text):
        end = min(len(text), start + _CHUNK_CHARS)
        if end < len(text):
            newline = text.rfind("\n", start, end)
            end = newline + 1 if newline > start else end
        yield text[start:end]
        start = end


def _write_json(path: Path, data: dict) -> None:
    path.write_text(strict_json.dumps(data, ensure_ascii=False), encoding="utf-8")
