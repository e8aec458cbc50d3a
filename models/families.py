"""Model families by name: every family takes the trial config and the vocabulary size."""

from __future__ import annotations

from torch import nn

from models.config import TrialConfig
from models.lstm import LSTMLM
from models.transformer import TransformerLM

FAMILIES: dict[str, type[nn.Module]] = {"transformer": TransformerLM, "lstm": LSTMLM}


def build_model(config: TrialConfig, vocab_size: int) -> nn.Module:
    """A freshly initialised model of ``config.family`` (seed the RNG first for reproducible weights)."""
    return FAMILIES[config.family](config, vocab_size)
