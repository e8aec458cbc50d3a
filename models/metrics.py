"""Units and counts: nats to bits per character, perplexity, training FLOPs, sample diversity."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

from models.config import TrialConfig
from models.language_model import LanguageModel


def bits_per_char(nats_per_token: float, chars_per_token: float) -> float:
    """Bits per character of text: comparable across tokenizers, unlike per-token loss."""
    return nats_per_token / math.log(2) / chars_per_token


def perplexity(nats_per_token: float) -> float:
    """exp(loss), saturating at inf instead of overflowing."""
    return math.exp(nats_per_token) if nats_per_token < 709 else math.inf


def flops_per_token(config: TrialConfig, model: LanguageModel) -> float:
    """Training FLOPs per token, PaLM-style: 6·N for the weights plus 12·L·nh·hs·T for attention scores.

    N counts non-embedding parameters. The LSTM has no attention term.
    """
    flops = 6.0 * model.non_embedding_params()
    if config.family == "transformer":
        flops += 12.0 * config.n_layers * config.n_heads * config.head_dim * config.block_size
    return flops


def distinct_n(samples: Iterable[Sequence[int]], n: int) -> float:
    """Distinct-n: unique n-grams over all n-grams in the samples (1.0 = no repetition); 0.0 when none."""
    grams = [tuple(s[i : i + n]) for s in samples for i in range(len(s) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0
