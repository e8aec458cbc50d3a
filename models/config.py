"""The trial config: every hyperparameter of one training run, validated before any compute.

Ray Tune hands hyperparameters over as plain values; samplers such as ``quniform`` return whole numbers as
floats (``64.0``) and NumPy scalars, so integer fields accept integral floats and NumPy scalars and nothing
else. Every key is documented in docs/models.md.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

import numpy as np
import pydantic

from data_pipeline.config import MAX_SEED  # numpy's seed range, the one range of every textune seed
from textune.config import StrictModel, validate

# Upper bounds far beyond any model this trains, so no size overflows a tensor index or hangs in allocation.
MAX_TOKENS = 10**15  # any token count (budgets, warmup, evaluation interval)
MAX_LAYERS, MAX_HEADS, MAX_WIDTH = 1024, 1024, 65_536
MAX_BLOCK, MAX_BATCH = 2**20, 2**20

# Keys that may change when a run is resumed: they steer the run, not the shape of its state.
RESUMABLE_CHANGES = frozenset({
    "max_tokens", "eval_every_tokens", "eval_max_blocks", "device", "compile", "num_threads", "tensorboard_dir",
    "sample_tokens", "fault_at_tokens", "fault_every_attempt", "dataset_dir", "anneal_at_tokens",
})


class TrialConfig(StrictModel):
    """One trial: the dataset, the model, the optimiser, the budget and the run's plumbing."""

    # An infinite or NaN setting (lr: .inf) would train to nonsense or crash mid-run: refused here, as are sizes
    # beyond the MAX_* bounds above.
    model_config = pydantic.ConfigDict(allow_inf_nan=False)

    # data
    dataset_dir: str = pydantic.Field(min_length=1)
    # cross-validation: validate on chunk `fold` of `num_folds` of the train+val text (data_pipeline.folds)
    num_folds: int | None = pydantic.Field(None, ge=2)
    fold: int | None = pydantic.Field(None, ge=0)
    # model
    family: Literal["transformer", "lstm"] = "transformer"
    n_layers: int = pydantic.Field(4, ge=1, le=MAX_LAYERS)
    n_heads: int = pydantic.Field(4, ge=1, le=MAX_HEADS)
    head_dim: int = pydantic.Field(32, ge=2, le=MAX_WIDTH)
    mlp_ratio: float = pydantic.Field(4.0, gt=0, le=64)
    dropout: float = pydantic.Field(0.0, ge=0, lt=1)
    block_size: int = pydantic.Field(128, ge=2, le=MAX_BLOCK)
    positions: Literal["learned", "rotary"] = "learned"
    lstm_hidden: int = pydantic.Field(256, ge=1, le=MAX_WIDTH)
    # optimiser and schedule
    optimizer: Literal["adamw", "adam", "sgd", "rmsprop"] = "adamw"
    lr: float = pydantic.Field(1e-3, gt=0)
    momentum: float = pydantic.Field(0.9, ge=0, lt=1)
    beta1: float = pydantic.Field(0.9, ge=0, lt=1)
    beta2: float = pydantic.Field(0.99, ge=0, lt=1)
    weight_decay: float = pydantic.Field(0.1, ge=0)
    warmup_tokens: int = pydantic.Field(0, ge=0, le=MAX_TOKENS)
    min_lr_ratio: float = pydantic.Field(0.1, ge=0, le=1)  # cosine's floor, a share of lr
    # wsd: warmup, constant lr, then a cooldown to 0 over the last cooldown_fraction of max_tokens (Hägele et al.
    # 2024); the annealed evaluations at anneal_at_tokens cool a branch down for cooldown_fraction of the tokens.
    lr_schedule: Literal["cosine", "wsd"] = "cosine"
    cooldown_fraction: float = pydantic.Field(0.2, gt=0, lt=1)
    cooldown_shape: Literal["linear", "1-sqrt"] = "1-sqrt"
    grad_clip: float = pydantic.Field(1.0, ge=0)
    batch_size: int = pydantic.Field(32, ge=1, le=MAX_BATCH)
    grad_accum: int = pydantic.Field(1, ge=1, le=MAX_BATCH)
    # budget and evaluation
    max_tokens: int = pydantic.Field(1_000_000, ge=1, le=MAX_TOKENS)
    eval_every_tokens: int = pydantic.Field(100_000, ge=1, le=MAX_TOKENS)
    eval_max_blocks: int | None = pydantic.Field(64, ge=1, le=2**31 - 1)
    sample_tokens: int = pydantic.Field(200, ge=0, le=MAX_BLOCK)
    # Token counts (ASHA's rungs, derived by tune_jobs.spec) whose evaluation is of a model cooled down on a
    # branch; used by wsd only, and only below max_tokens (a wsd run is cooled down at max_tokens anyway).
    anneal_at_tokens: list[Annotated[int, pydantic.Field(ge=1, le=MAX_TOKENS)]] = pydantic.Field([], max_length=1000)
    # plumbing
    seed: int = pydantic.Field(1337, ge=0, le=MAX_SEED)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    compile: bool = False
    num_threads: int | None = pydantic.Field(None, ge=1, le=1024)
    tensorboard_dir: str | None = None
    fault_at_tokens: int | None = pydantic.Field(None, ge=1, le=MAX_TOKENS)
    fault_every_attempt: bool = False

    @pydantic.field_validator("*", mode="before")
    @classmethod
    def _plain_numbers(cls, value: Any, info: pydantic.ValidationInfo) -> Any:
        """NumPy scalars become Python numbers; integral floats become ints where the field is an int."""
        if isinstance(value, np.generic):
            value = value.item()
        annotation = cls.model_fields[info.field_name].annotation
        wants_int = annotation is int or annotation == (int | None)
        if wants_int and isinstance(value, float) and math.isfinite(value) and value.is_integer():
            return int(value)
        return value

    @pydantic.model_validator(mode="after")
    def _rotary_needs_even_head_dim(self) -> "TrialConfig":
        # Rotary embeddings rotate pairs of channels.
        if self.family == "transformer" and self.positions == "rotary" and self.head_dim % 2:
            raise ValueError(f"head_dim must be even with rotary positions, got {self.head_dim}")
        return self

    @pydantic.model_validator(mode="after")
    def _fold_within_num_folds(self) -> "TrialConfig":
        if (self.fold is None) != (self.num_folds is None):
            raise ValueError("fold and num_folds go together: set both (fold 0 .. num_folds - 1) or neither")
        if self.fold is not None and self.num_folds is not None and self.fold >= self.num_folds:
            raise ValueError(f"fold must be below num_folds ({self.num_folds}), got {self.fold}")
        return self

    @pydantic.model_validator(mode="after")
    def _first_rung_before_the_cooldown(self) -> "TrialConfig":
        # With the final cooldown reaching back over the first rung, every rung would see a model already cooling
        # down and none the stable phase: the annealed evaluations, and wsd's point under ASHA, would be lost.
        # A later rung inside the cooldown is fine: its branch starts from the decaying lr (docs/job-spec.md).
        rungs = [tokens for tokens in self.anneal_at_tokens if tokens < self.max_tokens]
        if self.lr_schedule != "wsd" or not rungs:
            return self
        first, stable_end = min(rungs), self.max_tokens - self.final_cooldown_tokens
        if first > stable_end:
            raise ValueError(
                f"wsd's final cooldown (cooldown_fraction {self.cooldown_fraction} x max_tokens {self.max_tokens} "
                f"= {self.final_cooldown_tokens} tokens, from {stable_end} on) is longer than the budget after the "
                f"first rung at {first} tokens (anneal_at_tokens: ASHA's rungs, in a search), so no rung would see "
                "the stable phase that annealed evaluations branch from; set cooldown_fraction to at most "
                f"{(self.max_tokens - first) / self.max_tokens:.4g}, or lower scheduler.grace_period_tokens")
        return self

    @property
    def final_cooldown_tokens(self) -> int:
        """wsd: the tokens of the final cooldown, the last ``cooldown_fraction`` of max_tokens (at least 1)."""
        return max(1, round(self.cooldown_fraction * self.max_tokens))

    @property
    def d_model(self) -> int:
        """Width of the Transformer: a product of two sampled knobs, so no sampled config is invalid."""
        return self.n_heads * self.head_dim

    @property
    def tokens_per_step(self) -> int:
        """Training tokens consumed by one optimiser step."""
        return self.batch_size * self.block_size * self.grad_accum

    def hyperparameters(self) -> dict[str, Any]:
        """The keys that define the model and its training (for TensorBoard's HParams), without plumbing."""
        plumbing = {"dataset_dir", "device", "compile", "num_threads", "tensorboard_dir", "fault_at_tokens",
                    "fault_every_attempt", "sample_tokens", "eval_max_blocks", "anneal_at_tokens"}
        return {k: v for k, v in self.model_dump().items() if k not in plumbing and v is not None}


def parse_trial_config(config: dict[str, Any], where: str = "trial config") -> TrialConfig:
    """Validate a trial config dict (raises one TextuneError naming the field)."""
    return validate(TrialConfig, config, where)
