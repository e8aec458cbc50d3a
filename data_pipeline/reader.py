"""Reading a prepared dataset: memory-mapped token shards as training and evaluation batches.

The shards stay memory-mapped (uint16/uint32); only the gathered batch becomes int64. Training batches are
random blocks drawn with the caller's numpy Generator, so saving the Generator's state in a checkpoint is
enough to resume the exact batch sequence. Evaluation batches are a fixed, deterministic sequence of
non-overlapping blocks, identical for every trial, so two trials are judged on the same text.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np

from data_pipeline.cache import MANIFEST_FILE, is_complete
from data_pipeline.config import SPLIT_NAMES
from data_pipeline.manifest import EntropyFloor, Manifest
from data_pipeline.shards import open_shard
from data_pipeline.tokenization import Tokenizer, load_tokenizer
from textune.errors import TextuneError

Batch = tuple[np.ndarray, np.ndarray]  # x, y: int64 (B, T); y is x shifted left by one token


class TokenDataset:
    """A prepared dataset; construct with :meth:`open`."""

    def __init__(self, path: Path, manifest: Manifest, tokenizer: Tokenizer, tokens: dict[str, np.ndarray]):
        self.path = path
        self.manifest = manifest
        self.tokenizer = tokenizer
        self.tokens = tokens  # split -> read-only memory-mapped 1-D array of token ids

    @classmethod
    def open(cls, path: str | Path) -> "TokenDataset":
        path = Path(path)
        if not is_complete(path):
            raise TextuneError(f"{path} is not a prepared dataset (no {MANIFEST_FILE}; an unfinished build "
                               "never has one).", "Prepare it with: textune data prepare SOURCE.")
        manifest = Manifest.read(path)
        tokens = {name: open_shard(path / split.shard) for name, split in manifest.splits.items()}
        return cls(path, manifest, load_tokenizer(path, manifest.tokenizer.kind), tokens)

    def __reduce__(self):  # type: ignore[no-untyped-def]
        # Pickling (e.g. into a Ray task) reopens the shards by path instead of copying every token.
        return (TokenDataset.open, (str(self.path),))

    @property
    def entropy_floor(self) -> EntropyFloor | None:
        return self.manifest.entropy_floor

    def num_tokens(self, split: str) -> int:
        return len(self._split(split))

    def chars_per_token(self, split: str) -> float:
        self._split(split)
        return self.manifest.splits[split].chars_per_token

    def check_block_size(self, block_size: int, splits: tuple[str, ...] = ("train", "val")) -> None:
        """Raise a TextuneError unless every split in ``splits`` holds at least one (x, y) block."""
        for name in splits:
            available = self.num_tokens(name)
            if available < block_size + 1:
                raise TextuneError(
                    f'the "{name}" split of {self.path} has {available} tokens, too few for one block of '
                    f"block_size={block_size} (needs {block_size + 1}).",
                    f"Lower block_size to at most {max(available - 1, 0)}, give the split a larger fraction "
                    "(data.split), or use a larger corpus.")

    def sample_batch(self, split: str, batch_size: int, block_size: int, rng: np.random.Generator) -> Batch:
        """``batch_size`` random blocks of ``block_size`` tokens (starts uniform over the split)."""
        tokens = self._split(split)
        self.check_block_size(block_size, (split,))
        starts = rng.integers(0, len(tokens) - block_size, size=batch_size)  # (B,)
        return _gather(tokens, starts, block_size)

    def eval_batches(self, split: str, block_size: int, batch_size: int,
                     max_blocks: int | None = None) -> Iterator[Batch]:
        """Non-overlapping blocks from the start of the split, in order, ``batch_size`` at a time.

        Together they cover the split except a tail shorter than one block. ``max_blocks`` keeps an evenly
        spaced subset (always the same one), for cheaper evaluation that still spans the whole split.
        """
        tokens = self._split(split)
        self.check_block_size(block_size, (split,))
        count = (len(tokens) - 1) // block_size  # block i needs tokens [i*T, i*T + T] (T + 1 for the targets)
        block_index = np.arange(count)
        if max_blocks is not None and max_blocks < count:
            block_index = np.unique(np.linspace(0, count - 1, max(max_blocks, 1)).round().astype(np.int64))
        starts = block_index * block_size
        for first in range(0, len(starts), batch_size):
            yield _gather(tokens, starts[first:first + batch_size], block_size)

    def _split(self, split: str) -> np.ndarray:
        if split not in self.tokens:
            raise TextuneError(f'dataset {self.path} has no split "{split}".',
                               f"Use one of: {', '.join(n for n in SPLIT_NAMES if n in self.tokens)}.")
        return self.tokens[split]


def _gather(tokens: np.ndarray, starts: np.ndarray, block_size: int) -> Batch:
    offsets = starts[:, None] + np.arange(block_size + 1)  # (B, T + 1)
    blocks = tokens[offsets].astype(np.int64)  # the only copy: B x (T + 1) ids
    return blocks[:, :-1], blocks[:, 1:]
