"""Optimisers and the learning-rate schedules: linear warmup, then cosine decay to a floor (``cosine``), or a
constant lr and a cooldown to 0 over the last ``cooldown_fraction`` of the budget (``wsd``, warmup-stable-decay)."""

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
    if config.lr_schedule == "wsd":
        cooldown = config.final_cooldown_tokens
        into_cooldown = tokens - (config.max_tokens - cooldown)
        return config.lr * cooldown_factor(max(0, into_cooldown) / cooldown, config.cooldown_shape)
    floor = config.lr * config.min_lr_ratio
    decay_span = max(1, config.max_tokens - config.warmup_tokens)
    progress = min(1.0, (tokens - config.warmup_tokens) / decay_span)
    return floor + 0.5 * (1.0 + math.cos(math.pi * progress)) * (config.lr - floor)


def cooldown_factor(progress: float, shape: str) -> float:
    """The share of the lr left ``progress`` (0 to 1, clipped) through a cooldown: 1 at its start, 0 at its end.

    ``linear`` falls in a straight line; ``1-sqrt`` (1 - sqrt(progress)) falls fast at first and then slowly,
    which Hägele et al. 2024 found to beat linear at the same cooldown length.
    """
    progress = min(1.0, max(0.0, progress))
    return 1.0 - progress if shape == "linear" else 1.0 - math.sqrt(progress)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
