"""Validation folds: cross-validation for language models.

The text a model may learn from is the prepared train split followed by the val split (val is the text right
after train in the corpus, see prepare.split_text). With ``count`` folds this token stream is cut into
``count`` contiguous chunks of (almost) equal length; fold ``index`` validates on chunk ``index`` and trains on
the chunks before and after it. The test split belongs to no fold.

A block never straddles a chunk edge, so no training block reaches into the validation text. Nor does it
straddle the edge between the two stored shards: they are separate memory maps and joining them would copy
the corpus. Each split of a fold is therefore a list of contiguous segments (views, no copies).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from data_pipeline.tokenization import Tokenizer

# The stored splits that make up the stream folds are cut from, in corpus order.
FOLDED_SPLITS = ("train", "val")
_DECODE_PIECE = 1 << 20  # tokens decoded at a time when counting a segment's characters


@dataclass(frozen=True)
class Fold:
    """Fold ``index`` (0-based) of ``count``: chunk ``index`` of the train+val stream is the validation text."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if self.count < 2 or not 0 <= self.index < self.count:
            raise ValueError(f"fold {self.index} of {self.count}: need count >= 2 and 0 <= index < count")

    def bounds(self, total: int) -> tuple[int, int]:
        """The validation chunk ``[start, end)`` in a stream of ``total`` tokens."""
        return self.index * total // self.count, (self.index + 1) * total // self.count

    def describe(self) -> str:
        return f"fold {self.index} of {self.count}"


def fold_segments(stream: list[np.ndarray], fold: Fold) -> dict[str, list[np.ndarray]]:
    """The train and val segments of ``fold`` over ``stream`` (the stored train and val shards, in order)."""
    total = sum(len(part) for part in stream)
    start, end = fold.bounds(total)
    return {"train": _slice(stream, 0, start) + _slice(stream, end, total), "val": _slice(stream, start, end)}


def _slice(stream: list[np.ndarray], start: int, end: int) -> list[np.ndarray]:
    """The non-empty views of ``stream[start:end]``, one per stored part it touches."""
    pieces, offset = [], 0
    for part in stream:
        low, high = max(start, offset), min(end, offset + len(part))
        if low < high:
            pieces.append(part[low - offset : high - offset])
        offset += len(part)
    return pieces


def fits_one_block(segments: list[np.ndarray], block_size: int) -> bool:
    """Whether some segment holds an (x, y) block: ``block_size + 1`` tokens."""
    return any(len(segment) > block_size for segment in segments)


def max_folds(stream: list[np.ndarray], block_size: int, up_to: int) -> int:
    """The most folds (at most ``up_to``) for which every fold's train and val hold a block; 1 if none does."""
    total = sum(len(part) for part in stream)
    shard_edges = np.cumsum([len(part) for part in stream])[:-1]
    for count in range(min(up_to, total // (block_size + 1)), 1, -1):
        # Every chunk now has at least total // count >= block_size + 1 tokens (and each training part holds
        # whole chunks), so only a chunk that a shard edge cuts in two can lack a block: the chunk around it.
        around_edges = {
            index
            for edge in shard_edges
            for index in (edge * count // total, edge * count // total + 1)
            if index < count
        }
        if all(fits_one_block(fold_segments(stream, Fold(index, count))["val"], block_size) for index in around_edges):
            return count
    return 1


def count_characters(tokenizer: Tokenizer, segments: list[np.ndarray]) -> int:
    """Characters the segments decode to (decoded a piece at a time, so memory stays bounded).

    A piece edge inside a multi-byte character (byte and BPE tokenizers) can count it as two replacement
    characters: at most a few characters per million tokens.
    """
    return sum(
        len(tokenizer.decode(segment[start : start + _DECODE_PIECE]))
        for segment in segments
        for start in range(0, len(segment), _DECODE_PIECE)
    )
