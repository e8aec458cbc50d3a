"""The interface every model family implements: what the trainer, generation and FLOPs counting rely on."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class LanguageModel(nn.Module):
    """A causal language model: ``forward(idx (B, T) int64, cache=None) -> logits (B, T, V)``.

    ``block_size`` is the longest context the model reads (``None``: a recurrent model reads any length).
    ``new_cache()`` returns an empty generation cache that ``forward`` fills, so each later step feeds only the
    newest token; ``non_embedding_params()`` is N in the 6·N training FLOPs per token (Kaplan et al. 2020).
    Subclasses: models.transformer, models.lstm, models.plugin (a user's module and Hugging Face models).
    """

    block_size: int | None

    def forward(self, idx: torch.Tensor, cache: Any = None) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def new_cache(self) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def non_embedding_params(self) -> int:  # pragma: no cover - abstract
        raise NotImplementedError
