"""Optimisers and the learning-rate schedule (linear warmup, then cosine decay to a floor)."""

from __future__ import annotations

import math

import torch
from torch import nn

from models.config import TrialConfig


def build_optimizer(model: nn.Module, config: TrialConfig) -> torch.optim.Optimizer:
    """The configured optimiser, with weight decay on matrices only (not on biases, gains or LayerNorms)."""
    params = [p for p in model.parameters() if p.requires_grad]  # tied weights appear once
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": config.weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    if config.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=config.lr, betas=(config.beta1, config.beta2))
    if config.optimizer == "adam":
        return torch.optim.Adam(groups, lr=config.lr, betas=(config.beta1, config.beta2))
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum)
    return torch.optim.RMSprop(groups, lr=config.lr, momentum=config.momentum, alpha=config.beta2)


def lr_at(tokens: int, config: TrialConfig) -> float:
    """Learning rate after ``tokens`` training tokens: a pure function of tokens, so resume needs no state."""
    if tokens < config.warmup_tokens:
        return config.lr * (tokens + config.tokens_per_step) / (config.warmup_tokens + config.tokens_per_step)
    floor = config.lr * config.min_lr_ratio
    decay_span = max(1, config.max_tokens - config.warmup_tokens)
    progress = min(1.0, (tokens - config.warmup_tokens) / decay_span)
    return floor + 0.5 * (1.0 + math.cos(math.pi * progress)) * (config.lr - floor)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
