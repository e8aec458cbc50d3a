"""The manifest: what a prepared dataset holds, written last so its presence marks a complete dataset."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Final, Literal

from data_pipeline.cache import MANIFEST_FILE
from data_pipeline.config import DataConfig
from textune.config import StrictModel, validate

SCHEMA_VERSION: Final = 1


class SourceInfo(StrictModel):
    description: str
    content_hash: str  # sha256 of the corpus text


class TokenizerInfo(StrictModel):
    kind: str
    vocab_size: int
    file: str


class SplitInfo(StrictModel):
    tokens: int
    characters: int
    chars_per_token: float
    shard: str


class EntropyFloor(StrictModel):
    """The true source's entropy rate: no model can have a lower expected loss."""

    nats_per_char: float
    bits_per_char: float
    nats_per_token: float  # nats_per_char x the val split's characters per token, for this tokenizer


class Manifest(StrictModel):
    schema_version: Literal[1] = SCHEMA_VERSION
    created_at: str
    source: SourceInfo
    tokenizer: TokenizerInfo
    split_fractions: dict[str, float]
    splits: dict[str, SplitInfo]
    token_dtype: Literal["uint16", "uint32"]
    entropy_floor: EntropyFloor | None
    data: DataConfig  # the full config this dataset was prepared from

    def write(self, directory: Path) -> None:
        (directory / MANIFEST_FILE).write_text(self.model_dump_json(indent=2) + "\n", encoding="utf-8")

    @classmethod
    def read(cls, directory: Path) -> Manifest:
        path = directory / MANIFEST_FILE
        return validate(cls, json.loads(path.read_text(encoding="utf-8")), f"dataset manifest {path}")

    def summary(self) -> str:
        """A few human lines: source, tokenizer, split sizes and the floor."""
        lines = [
            f"source:    {self.source.description}",
            f"content:   sha256 {self.source.content_hash[:16]}... (prepared {self.created_at})",
            f"tokenizer: {self.tokenizer.kind} (vocab {self.tokenizer.vocab_size}, {self.token_dtype})",
        ]
        for name, split in self.splits.items():
            lines.append(
                f"{name + ':':<10} {split.tokens:>12,} tokens {split.characters:>12,} chars "
                f"({split.chars_per_token:.3f} chars/token)"
            )
        if self.entropy_floor is not None:
            floor = self.entropy_floor
            lines.append(
                f"floor:     {floor.bits_per_char:.4f} bits/char, {floor.nats_per_char:.4f} nats/char, "
                f"{floor.nats_per_token:.4f} nats/token"
            )
        return "\n".join(lines)
