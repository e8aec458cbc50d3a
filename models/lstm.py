"""An LSTM language model: the recurrent baseline, behind the same interface as the Transformer.

``forward(idx (B, T), cache=None) -> logits (B, T, V)``; a cache carries the recurrent state between calls,
which is what the Transformer's KV cache is to attention. Input and output embeddings are tied, so the
embedding width is the hidden size.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from models.config import TrialConfig
from models.language_model import LanguageModel


@dataclass
class LSTMState:
    """Hidden and cell state of every layer, each (n_layers, B, H); None before the first call."""

    hidden: tuple[torch.Tensor, torch.Tensor] | None = None
    length: int = 0


class LSTMLM(LanguageModel):
    # A recurrent model has no context limit: generation never crops its input.
    block_size = None

    def __init__(self, config: TrialConfig, vocab_size: int) -> None:
        super().__init__()
        hidden = config.lstm_hidden
        self.wte = nn.Embedding(vocab_size, hidden)
        self.drop = nn.Dropout(config.dropout)
        # nn.LSTM applies its dropout between layers only, hence the explicit dropouts around it.
        self.lstm = nn.LSTM(
            hidden,
            hidden,
            num_layers=config.n_layers,
            batch_first=True,
            dropout=config.dropout if config.n_layers > 1 else 0.0,
        )
        self.lm_head = nn.Linear(hidden, vocab_size, bias=False)
        self.lm_head.weight = self.wte.weight  # tied input/output embeddings
        nn.init.normal_(self.wte.weight, mean=0.0, std=0.02)

    def forward(self, idx: torch.Tensor, cache: LSTMState | None = None) -> torch.Tensor:
        x = self.drop(self.wte(idx))  # (B, T, H)
        out, state = self.lstm(x, cache.hidden if cache is not None else None)  # (B, T, H)
        if cache is not None:
            cache.hidden, cache.length = state, cache.length + idx.shape[1]
        return self.lm_head(self.drop(out))  # (B, T, V)

    @staticmethod
    def new_cache() -> LSTMState:
        return LSTMState()

    def non_embedding_params(self) -> int:
        """Parameters outside the (tied) embedding table: the N of the 6·N FLOPs-per-token rule."""
        return sum(p.numel() for p in self.lstm.parameters())
