"""A decoder-only Transformer language model with an optional KV cache for generation.

Pre-LayerNorm blocks, causal self-attention through ``F.scaled_dot_product_attention``, learned or rotary
positions, a GELU MLP and input/output embeddings tied together. Shapes: B batch, T time, C = d_model,
nh heads, hs head_dim, V vocabulary.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from models.config import TrialConfig
from models.language_model import LanguageModel


@dataclass
class KVCache:
    """Keys and values of every layer for the tokens seen so far, each (B, nh, T_past, hs)."""

    keys: list[torch.Tensor | None] = field(default_factory=list)
    values: list[torch.Tensor | None] = field(default_factory=list)
    length: int = 0


def rotary_tables(block_size: int, head_dim: int, base: float = 10000.0) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of every (position, channel pair) angle, each (block_size, head_dim // 2)."""
    inv_freq = 1.0 / (base ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
    angles = torch.outer(torch.arange(block_size, dtype=torch.float32), inv_freq)
    return angles.cos(), angles.sin()


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate channel pairs of x (B, nh, T, hs) by their position's angle; cos/sin are (T, hs // 2)."""
    x1, x2 = x[..., 0::2], x[..., 1::2]
    rotated = torch.stack((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)  # (B, nh, T, hs//2, 2)
    return rotated.flatten(-2).type_as(x)


class CausalSelfAttention(nn.Module):
    def __init__(self, config: TrialConfig) -> None:
        super().__init__()
        self.n_heads, self.head_dim = config.n_heads, config.head_dim
        self.qkv = nn.Linear(config.d_model, 3 * config.d_model)
        self.proj = nn.Linear(config.d_model, config.d_model)
        self.dropout = config.dropout
        self.resid_dropout = nn.Dropout(config.dropout)

    def forward(
        self, x: torch.Tensor, rotary: tuple[torch.Tensor, torch.Tensor] | None, cache: KVCache | None, layer: int
    ) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=2)
        q, k, v = (t.view(B, T, self.n_heads, self.head_dim).transpose(1, 2) for t in (q, k, v))  # (B, nh, T, hs)
        if rotary is not None:
            q, k = apply_rotary(q, *rotary), apply_rotary(k, *rotary)
        past = 0
        if cache is not None:
            past = cache.length
            past_keys, past_values = cache.keys[layer], cache.values[layer]
            if past_keys is not None and past_values is not None:
                k = torch.cat((past_keys, k), dim=2)  # (B, nh, past + T, hs)
                v = torch.cat((past_values, v), dim=2)
            cache.keys[layer], cache.values[layer] = k, v
        if past == 0:
            y = F.scaled_dot_product_attention(
                q, k, v, dropout_p=self.dropout if self.training else 0.0, is_causal=True
            )
        else:
            # New queries see every cached key and the new keys up to their own position.
            mask = torch.ones(T, past + T, dtype=torch.bool, device=x.device).tril(diagonal=past)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # (B, T, C)
        return self.resid_dropout(self.proj(y))


class Block(nn.Module):
    def __init__(self, config: TrialConfig) -> None:
        super().__init__()
        hidden = max(1, round(config.mlp_ratio * config.d_model))
        self.ln_1 = nn.LayerNorm(config.d_model)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.d_model)
        self.mlp = nn.Sequential(
            nn.Linear(config.d_model, hidden), nn.GELU(), nn.Linear(hidden, config.d_model), nn.Dropout(config.dropout)
        )

    def forward(
        self, x: torch.Tensor, rotary: tuple[torch.Tensor, torch.Tensor] | None, cache: KVCache | None, layer: int
    ) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), rotary, cache, layer)
        return x + self.mlp(self.ln_2(x))


class TransformerLM(LanguageModel):
    """GPT-style language model: ``forward(idx (B, T)) -> logits (B, T, V)``."""

    # Buffers of rotary models, each (block_size, head_dim // 2); declared for the type checker, which sees a
    # registered buffer as nn.Module.__getattr__'s Tensor | Module.
    rotary_cos: torch.Tensor
    rotary_sin: torch.Tensor
    block_size: int  # a Transformer always has a longest context

    def __init__(self, config: TrialConfig, vocab_size: int) -> None:
        super().__init__()
        self.block_size = config.block_size
        self.wte = nn.Embedding(vocab_size, config.d_model)
        self.wpe = nn.Embedding(config.block_size, config.d_model) if config.positions == "learned" else None
        if config.positions == "rotary":
            cos, sin = rotary_tables(config.block_size, config.head_dim)
            # Not persistent: derived from the config, so checkpoints hold only learned weights.
            self.register_buffer("rotary_cos", cos, persistent=False)
            self.register_buffer("rotary_sin", sin, persistent=False)
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layers))
        self.ln_f = nn.LayerNorm(config.d_model)
        self.lm_head = nn.Linear(config.d_model, vocab_size, bias=False)
        self.lm_head.weight = self.wte.weight  # tied input/output embeddings
        self.apply(self._init_weights)
        # GPT-2: scale the residual projections by depth so the residual stream's variance stays put.
        for name, param in self.named_parameters():
            if name.endswith(("attn.proj.weight", "mlp.2.weight")):
                nn.init.normal_(param, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layers))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def forward(self, idx: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        """Logits (B, T, V) for idx (B, T); with a cache, idx continues the cached tokens and extends the cache."""
        B, T = idx.shape
        start = cache.length if cache is not None else 0
        if start + T > self.block_size:
            raise ValueError(f"sequence of {start + T} tokens exceeds block_size {self.block_size}")
        if cache is not None and not cache.keys:
            cache.keys = [None] * len(self.blocks)
            cache.values = [None] * len(self.blocks)
        x = self.wte(idx)  # (B, T, C)
        rotary = None
        if self.wpe is not None:
            x = x + self.wpe(torch.arange(start, start + T, device=idx.device))
        else:
            rotary = (self.rotary_cos[start : start + T], self.rotary_sin[start : start + T])
        x = self.drop(x)
        for layer, block in enumerate(self.blocks):
            x = block(x, rotary, cache, layer)
        if cache is not None:
            cache.length = start + T
        return self.lm_head(self.ln_f(x))  # (B, T, V)

    @staticmethod
    def new_cache() -> KVCache:
        return KVCache()

    def non_embedding_params(self) -> int:
        """Parameters outside the embedding tables: the N of the 6·N FLOPs-per-token rule."""
        embeddings = self.wte.weight.numel() + (self.wpe.weight.numel() if self.wpe is not None else 0)
        return sum(p.numel() for p in self.parameters()) - embeddings
