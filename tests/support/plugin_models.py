"""Model factories for ``family: "package.module:function"`` (models.plugin): one that works and a few wrong ones.

Trials import it as ``support.plugin_models`` (pytest puts tests/ on the path) or, from the CLI run in the
checkout, as ``tests.support.plugin_models``. docs/models.md shows ``gru`` as the example of a user's model.
"""

from __future__ import annotations

import torch
from torch import nn

from models.config import TrialConfig


class GRULM(nn.Module):
    """A causal GRU language model: ``forward(idx (B, T)) -> logits (B, T, V)``."""

    def __init__(self, vocab_size: int, width: int, layers: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, width)
        self.gru = nn.GRU(width, width, num_layers=layers, batch_first=True)
        self.head = nn.Linear(width, vocab_size)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        hidden, _ = self.gru(self.embed(idx))  # (B, T, width)
        return self.head(hidden)  # (B, T, V)


def gru(config: TrialConfig, vocab_size: int) -> nn.Module:
    """The trial's d_model (n_heads x head_dim) and n_layers size the GRU, so a search's space applies to it."""
    return GRULM(vocab_size, config.d_model, config.n_layers)


class LastPositionOnly(GRULM):
    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return super().forward(idx)[:, -1]  # (B, V): the common mistake of a classifier-style head


def wrong_shape(config: TrialConfig, vocab_size: int) -> nn.Module:
    return LastPositionOnly(vocab_size, 8, 1)


def no_vocab_size(config: TrialConfig) -> nn.Module:
    return GRULM(256, 8, 1)


def refuses_its_sizes(config: TrialConfig, vocab_size: int) -> nn.Module:
    raise ValueError(f"d_model {config.d_model} is not a multiple of 64")


def returns_a_dict(config: TrialConfig, vocab_size: int) -> dict:
    return {"model": GRULM(vocab_size, 8, 1)}


class BidirectionalGRULM(nn.Module):
    def __init__(self, vocab_size: int, width: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, width)
        self.gru = nn.GRU(width, width, batch_first=True, bidirectional=True)  # reads the future too
        self.head = nn.Linear(2 * width, vocab_size)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.head(self.gru(self.embed(idx))[0])  # (B, T, V)


def sees_the_future(config: TrialConfig, vocab_size: int) -> nn.Module:
    return BidirectionalGRULM(vocab_size, 8)
