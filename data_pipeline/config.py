"""The typed ``data:`` section: which corpus, which tokenizer, which split.

The same :class:`DataConfig` is embedded in training configs and job specs, so
it is self-contained: everything that decides the prepared tokens is here (and
therefore in the cache key), nothing about where the result is stored.
"""

from __future__ import annotations

import math
from typing import Literal

import pydantic

from textune.config import StrictModel

# Byte-level BPE starts from all 256 byte values; merges come on top.
BPE_BASE_ALPHABET = 256
DEFAULT_BPE_VOCAB_SIZE = 1024
# Hugging Face's BPE trainer aborts the whole process (a Rust panic) from 2**32 ids up, leaving a half-built
# dataset behind; 2**20 is far more ids than any corpus textune trains on can fill.
MAX_BPE_VOCAB_SIZE = 2**20
# numpy's seeding takes 0 .. 2**32 - 1, the range of every seed textune takes.
MAX_SEED = 2**32 - 1

SPLIT_NAMES = ("train", "val", "test")


class TokenizerConfig(StrictModel):
    """``char``: one id per character seen in the train split (id 0 = unseen); ``byte``: 256 ids;
    ``bpe``: byte-level BPE trained on the train split with ``vocab_size`` ids."""

    kind: Literal["char", "byte", "bpe", "pretrained"] = pydantic.Field(
        default="char",
        description="`char`: one id per character of the train split (id 0 = unseen); `byte`: 256 ids; `bpe`: "
        "byte-level BPE trained on the train split (`--tokenizer`); `pretrained`: a model's own "
        "tokenizer.json, from `path`.",
    )
    # Checked against 256 and kind by _vocab_size_fits_kind, which names --vocab-size for `data prepare`.
    vocab_size: int | None = pydantic.Field(
        default=None,
        gt=0,
        le=MAX_BPE_VOCAB_SIZE,
        json_schema_extra={"shown_default": f"{DEFAULT_BPE_VOCAB_SIZE} for `bpe`"},
        description=f"`bpe` only, at least {BPE_BASE_ALPHABET} (its byte alphabet); from 2³² ids the BPE trainer "
        "would abort the process (`--vocab-size`).",
    )

    path: str | None = pydantic.Field(
        default=None,
        min_length=1,
        validate_default=True,  # pretrained needs one: checked when it is left out too
        description="`pretrained` only: a model's `save_pretrained` directory holding tokenizer.json, or that "
        "file; the prepared dataset's cache key holds the file's SHA-256 (`--tokenizer-path`).",
    )

    @pydantic.field_validator("vocab_size")
    @classmethod
    def _vocab_size_fits_kind(cls, value: int | None, info: pydantic.ValidationInfo) -> int | None:
        kind = info.data.get("kind")
        if value is None:
            return value
        if kind != "bpe":
            raise ValueError(
                f'the {kind} tokenizer derives its vocabulary itself; vocab_size (--vocab-size) applies to "bpe" only'
            )
        if value < BPE_BASE_ALPHABET:
            raise ValueError(
                f"a byte-level BPE vocabulary holds at least its base alphabet of "
                f"{BPE_BASE_ALPHABET} byte values; set vocab_size (--vocab-size) to "
                f"{BPE_BASE_ALPHABET} or more"
            )
        return value

    @pydantic.field_validator("path")
    @classmethod
    def _path_for_pretrained_only(cls, value: str | None, info: pydantic.ValidationInfo) -> str | None:
        # A check of path (not of the section) so messages name path, or --tokenizer-path on a command line.
        kind = info.data.get("kind")
        if kind == "pretrained" and value is None:
            raise ValueError(
                "the pretrained tokenizer reads a model's own tokenizer.json; give the model's save_pretrained "
                "directory or that file"
            )
        if kind is not None and kind != "pretrained" and value is not None:
            raise ValueError(
                f"only the pretrained tokenizer is read from a path; the {kind} tokenizer is built from the corpus"
            )
        return value

    @pydantic.model_validator(mode="after")
    def _bpe_default_vocab_size(self) -> TokenizerConfig:
        if self.kind == "bpe" and self.vocab_size is None:
            self.vocab_size = DEFAULT_BPE_VOCAB_SIZE
        return self


class SplitConfig(StrictModel):
    """Fractions of the corpus (in characters) for contiguous train / val / test parts, in that order."""

    train: float = pydantic.Field(default=0.9, gt=0, lt=1, description="Share of the corpus to train on, first.")
    val: float = pydantic.Field(default=0.05, gt=0, lt=1, description="Share to validate on, after train.")
    test: float = pydantic.Field(
        default=0.05, ge=0, lt=1, description="Share held out, last; the three sum to 1 (`--split train,val,test`)."
    )

    @pydantic.model_validator(mode="after")
    def _sums_to_one(self) -> SplitConfig:
        total = self.train + self.val + self.test
        if not math.isclose(total, 1.0, abs_tol=1e-6):
            raise ValueError(f"split fractions train + val + test must sum to 1, got {total:g}")
        return self

    def fractions(self) -> dict[str, float]:
        """The fractions by split name, in order: {"train": 0.9, "val": 0.05, "test": 0.05} by default."""
        return {name: getattr(self, name) for name in SPLIT_NAMES}


class SyntheticConfig(StrictModel):
    """The built-in ``synthetic`` corpus: a seeded word-level Markov source (see data_pipeline.synthetic)."""

    seed: int = pydantic.Field(default=0, ge=0, le=MAX_SEED, description="Seeds the chain (`--seed`).")
    # The corpus is built in memory (about 5 bytes a character with its tokens): 10**9 is as far as that goes.
    characters: int = pydantic.Field(
        default=2_000_000, gt=0, le=10**9, description="Corpus size in characters, built in memory (`--characters`)."
    )
    words: int = pydantic.Field(default=100, ge=2, le=5000, description="Vocabulary of distinct words.")
    branching: int = pydantic.Field(default=10, ge=1, le=64, description="Successor words per word.")


class DataConfig(StrictModel):
    """Where the text comes from and how it becomes tokens.

    ``source`` is a text file, a directory or glob of files, a ``.jsonl`` / ``.parquet`` / ``.arrow`` /
    ``.feather`` path or URI (``s3://bucket/key``), or a built-in: ``synthetic`` or ``shakespeare``.
    """

    source: str = pydantic.Field(default="synthetic", description="See *Sources*.")
    text_field: str = pydantic.Field(
        default="text", min_length=1, description="JSONL key that holds the text (`--text-field`)."
    )
    text_column: str = pydantic.Field(
        default="text", min_length=1, description="Parquet/Arrow column that holds the text (`--text-column`)."
    )
    tokenizer: TokenizerConfig = pydantic.Field(default=TokenizerConfig(), description="See *Tokenizers*.")
    split: SplitConfig = pydantic.Field(default=SplitConfig(), description="See *Splits*.")
    synthetic: SyntheticConfig = pydantic.Field(
        default=SyntheticConfig(), description="The `synthetic` source; see *The synthetic corpus*."
    )

    @pydantic.field_validator("source")
    @classmethod
    def _source_not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("give a path, a URI or a built-in name (synthetic, shakespeare)")
        return value
