"""Reading a prepared dataset: memory-mapped token shards as training and evaluation batches.

The shards stay memory-mapped (uint16/uint32); only the gathered batch becomes int64. Training batches are
random blocks drawn with the caller's numpy Generator, so saving the Generator's state in a checkpoint is
enough to resume the exact batch sequence. Evaluation batches are a fixed, deterministic sequence of
non-overlapping blocks, identical for every trial, so two trials are judged on the same text.

Opened with a validation :class:`~data_pipeline.folds.Fold`, the train and val splits are re-cut from the
train+val text (cross-validation, see data_pipeline.folds). Each split is read from a list of contiguous
segments, and a block never crosses from one segment into the next.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from data_pipeline.cache import MANIFEST_FILE, is_complete
from data_pipeline.config import SPLIT_NAMES
from data_pipeline.folds import FOLDED_SPLITS, Fold, count_characters, fits_one_block, fold_segments, max_folds
from data_pipeline.manifest import EntropyFloor, Manifest
from data_pipeline.shards import open_shard
from data_pipeline.tokenization import Tokenizer, load_tokenizer
from textune.errors import TextuneError

Batch = tuple[np.ndarray, np.ndarray]  # x, y: int64 (B, T); y is x shifted left by one token


class TokenDataset:
    """A prepared dataset; construct with :meth:`open`."""

    def __init__(
        self,
        path: Path,
        manifest: Manifest,
        tokenizer: Tokenizer,
        tokens: dict[str, np.ndarray],
        fold: Fold | None = None,
    ):
        self.path = path
        self.manifest = manifest
        self.tokenizer = tokenizer
        self.tokens = tokens  # split -> read-only memory-mapped 1-D array of token ids, as stored
        self.fold = fold
        # split -> the contiguous pieces its batches are read from: the stored shard, or a fold's chunks of it
        self.segments = {name: [array] for name, array in tokens.items()}
        if fold is not None:
            self.segments.update(fold_segments([tokens[name] for name in FOLDED_SPLITS], fold))
        self._fold_chars_per_token: dict[str, float] = {}

    @classmethod
    def open(cls, path: str | Path, fold: Fold | None = None) -> TokenDataset:
        """The dataset at ``path``; with ``fold``, its train and val splits are that validation fold's."""
        path = Path(path)
        if not is_complete(path):
            raise TextuneError(
                f"{path} is not a prepared dataset (no {MANIFEST_FILE}; an unfinished build never has one).",
                "Prepare it with: textune data prepare SOURCE.",
            )
        manifest = Manifest.read(path)
        tokens = {name: open_shard(path / split.shard) for name, split in manifest.splits.items()}
        return cls(path, manifest, load_tokenizer(path, manifest.tokenizer.kind), tokens, fold)

    def __reduce__(self) -> tuple[Callable[..., TokenDataset], tuple[str, Fold | None]]:
        # Pickling (e.g. into a Ray task) reopens the shards by path instead of copying every token.
        return (TokenDataset.open, (str(self.path), self.fold))

    @property
    def entropy_floor(self) -> EntropyFloor | None:
        return self.manifest.entropy_floor

    def num_tokens(self, split: str) -> int:
        return sum(len(segment) for segment in self._split(split))

    def chars_per_token(self, split: str) -> float:
        self._split(split)
        if self.fold is None or split not in FOLDED_SPLITS:
            return self.manifest.splits[split].chars_per_token
        if split not in self._fold_chars_per_token:
            self._fold_chars_per_token.update(self._count_fold_chars_per_token())
        return self._fold_chars_per_token[split]

    def _count_fold_chars_per_token(self) -> dict[str, float]:
        """Characters per token of the fold's val chunk (decoded) and of its train part (the rest of train+val)."""
        val_chars = count_characters(self.tokenizer, self.segments["val"])
        stream_chars = sum(self.manifest.splits[name].characters for name in FOLDED_SPLITS)
        return {
            "val": val_chars / self.num_tokens("val"),
            "train": (stream_chars - val_chars) / self.num_tokens("train"),
        }

    def check_block_size(self, block_size: int, splits: tuple[str, ...] = ("train", "val")) -> None:
        """Raise a TextuneError unless every split in ``splits`` holds at least one (x, y) block."""
        for name in splits:
            if self.fold is not None and name in FOLDED_SPLITS:
                self._check_fold_block_size(name, block_size)
                continue
            available = self.num_tokens(name)
            if available < block_size + 1:
                # The smallest block_size a model takes is 2 (models.config): below 3 tokens only the split can help.
                grow = (
                    f"the {name} split a larger fraction (data.split, or --split of textune data prepare), "
                    "or use a larger corpus."
                )
                raise TextuneError(
                    f'the "{name}" split of {self.path} has {available} tokens, too few for one block of '
                    f"block_size={block_size} (needs {block_size + 1}).",
                    f"Lower block_size to at most {available - 1}, give {grow}" if available >= 3 else f"Give {grow}",
                )

    def _check_fold_block_size(self, split: str, block_size: int) -> None:
        segments = self.segments[split]
        if fits_one_block(segments, block_size):
            return
        assert self.fold is not None
        longest = max((len(segment) for segment in segments), default=0)
        stream = [self.tokens[name] for name in FOLDED_SPLITS]
        most = max_folds(stream, block_size, self.fold.count - 1)
        fix = (
            f"Use at most {most} folds (--folds {most}, or num_folds in a trial config)"
            if most >= 2
            else "This train+val text is too short to cut into folds for this block size: drop --folds"
        )
        raise TextuneError(
            f'{self.fold.describe()} of {self.path}: its "{split}" part has at most {longest} contiguous tokens, '
            f"too few for one block of block_size={block_size} (needs {block_size + 1}); --folds "
            f"{self.fold.count} cuts the {sum(map(len, stream))} train+val tokens too finely.",
            f"{fix}, lower block_size, or use a larger corpus.",
        )

    def sample_batch(self, split: str, batch_size: int, block_size: int, rng: np.random.Generator) -> Batch:
        """``batch_size`` random blocks of ``block_size`` tokens (starts uniform over the split's valid starts)."""
        segments = self._split(split)
        self.check_block_size(block_size, (split,))
        # A block starting at s needs tokens [s, s + T]: a segment of n tokens has n - T starts.
        starts_per_segment = np.array([max(len(segment) - block_size, 0) for segment in segments])
        flat = rng.integers(0, starts_per_segment.sum(), size=batch_size)  # (B,) over all segments' starts
        ends = np.cumsum(starts_per_segment)
        segment_index = np.searchsorted(ends, flat, side="right")  # (B,)
        starts = flat - (ends - starts_per_segment)[segment_index]  # (B,) within each block's segment
        return _gather(segments, segment_index, starts, block_size)

    def eval_batches(
        self, split: str, block_size: int, batch_size: int, max_blocks: int | None = None
    ) -> Iterator[Batch]:
        """Non-overlapping blocks from the start of the split, in order, ``batch_size`` at a time.

        Together they cover the split except a tail shorter than one block (one per segment of a fold's split).
        ``max_blocks`` keeps an evenly spaced subset (always the same one), for cheaper evaluation that still
        spans the whole split.
        """
        segments = self._split(split)
        self.check_block_size(block_size, (split,))
        # block i of a segment needs tokens [i*T, i*T + T] (T + 1 for the targets)
        counts = [(len(segment) - 1) // block_size if len(segment) else 0 for segment in segments]
        segment_index = np.repeat(np.arange(len(segments)), counts)  # (N,) in stream order
        starts = np.concatenate([np.arange(count) * block_size for count in counts])  # (N,)
        if max_blocks is not None and max_blocks < len(starts):
            keep = np.unique(np.linspace(0, len(starts) - 1, max(max_blocks, 1)).round().astype(np.int64))
            segment_index, starts = segment_index[keep], starts[keep]
        for first in range(0, len(starts), batch_size):
            chosen = slice(first, first + batch_size)
            yield _gather(segments, segment_index[chosen], starts[chosen], block_size)

    def _split(self, split: str) -> list[np.ndarray]:
        if split not in self.segments:
            raise TextuneError(
                f'dataset {self.path} has no split "{split}".',
                f"Use one of: {', '.join(n for n in SPLIT_NAMES if n in self.segments)}.",
            )
        return self.segments[split]


def _gather(segments: list[np.ndarray], segment_index: np.ndarray, starts: np.ndarray, block_size: int) -> Batch:
    """Block b: ``segments[segment_index[b]][starts[b] : starts[b] + T + 1]``, as x and y (B, T)."""
    offsets = np.arange(block_size + 1)  # (T + 1,)
    if len(segments) == 1:
        blocks = segments[0][starts[:, None] + offsets].astype(np.int64)  # (B, T + 1)
    else:
        # One gather per segment, then the rows go back to the order they were drawn in.
        grouped = np.argsort(segment_index, kind="stable")  # (B,) rows by segment, in draw order within one
        parts = [segments[index][starts[segment_index == index, None] + offsets] for index in np.unique(segment_index)]
        blocks = np.empty((len(starts), block_size + 1), dtype=np.int64)  # (B, T + 1)
        blocks[grouped] = np.concatenate(parts)
    return blocks[:, :-1], blocks[:, 1:]
