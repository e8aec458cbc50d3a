"""The trial config: every hyperparameter of one training run, validated before any compute.

Ray Tune hands hyperparameters over as plain values; samplers such as ``quniform`` return whole numbers as
floats (``64.0``) and NumPy scalars, so integer fields accept integral floats and NumPy scalars and nothing
else. Each key is documented by its ``Field(description=...)`` and belongs to one of CATEGORIES, which decides
whether it is a hyperparameter (TensorBoard's HParams) and whether a resumed run may change it. docs/models.md's
key tables are generated from these fields (tests/support/doc_tables.py).
"""

from __future__ import annotations

import dataclasses
import math
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import pydantic

from data_pipeline.config import MAX_SEED  # numpy's seed range, the one range of every textune seed
from textune.config import SUGGESTED, StrictModel, validate

# Upper bounds far beyond any model this trains, so no size overflows a tensor index or hangs in allocation.
MAX_TOKENS = 10**15  # any token count (budgets, warmup, evaluation interval)
MAX_LAYERS, MAX_HEADS, MAX_WIDTH = 1024, 1024, 65_536
MAX_BLOCK, MAX_BATCH = 2**20, 2**20
BUILT_IN_FAMILIES = ("transformer", "lstm", "hf")
# A user's model factory (models.plugin): a dotted module path, a colon, one function name.
FACTORY_PATTERN = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*$")


@dataclasses.dataclass(frozen=True)
class Category:
    """A group of trial config keys, and the two things that depend on the group rather than on the key."""

    title: str
    hyperparameter: bool  # defines the model or its training: recorded as a TensorBoard HParam
    resumable: bool  # may change when a run is resumed: it steers the run, not the shape of its state
    suggested: bool = True  # offered in "Valid keys" lists and did-you-mean (test-only keys are not)


# Every key of TrialConfig is in exactly one category (the field's json_schema_extra, set with _in).
CATEGORIES = {
    "data": Category("which text trains and which validates", hyperparameter=True, resumable=False),
    "model": Category("the model, in every family", hyperparameter=True, resumable=False),
    "transformer": Category("the Transformer family", hyperparameter=True, resumable=False),
    "lstm": Category("the LSTM family", hyperparameter=True, resumable=False),
    "hf": Category("the Hugging Face family", hyperparameter=True, resumable=False),
    "lora": Category("LoRA fine-tuning of a saved Hugging Face model", hyperparameter=True, resumable=False),
    "training": Category("optimiser, schedule, batches and seed", hyperparameter=True, resumable=False),
    "budget": Category("how long the trial trains and how often it evaluates", hyperparameter=True, resumable=True),
    "evaluation": Category("what each evaluation measures and logs", hyperparameter=False, resumable=True),
    "plumbing": Category("where the run reads and writes, and on what it runs", hyperparameter=False, resumable=True),
    "faults": Category("fault injection, for reliability tests", hyperparameter=False, resumable=True, suggested=False),
}


def _in(category: str) -> dict[str, Any]:
    """The ``json_schema_extra`` of a TrialConfig field in ``category`` (a key of CATEGORIES)."""
    if category not in CATEGORIES:
        raise KeyError(f"unknown trial config category {category!r}; one of {', '.join(CATEGORIES)}")
    return {"category": category, SUGGESTED: CATEGORIES[category].suggested}


# The keys of `adapter: {kind: lora, ...}`, each the trial key lora_<key> (searchable under that name).
ADAPTER_KEYS = ("r", "alpha", "dropout", "target_modules")


class TrialConfig(StrictModel):
    """One trial: the dataset, the model, the optimiser, the budget and the run's plumbing (see CATEGORIES)."""

    # An infinite or NaN setting (lr: .inf) would train to nonsense or crash mid-run: refused here, as are sizes
    # beyond the MAX_* bounds above.
    model_config = pydantic.ConfigDict(allow_inf_nan=False)

    # The fields' order is the order of the keys in saved configs (config.yaml, checkpoints' meta.json).
    dataset_dir: str = pydantic.Field(
        min_length=1,
        json_schema_extra=_in("plumbing"),
        description="A prepared dataset directory (`textune train` fills it in from `data:`).",
    )
    num_folds: int | None = pydantic.Field(
        None,
        ge=2,
        json_schema_extra=_in("data"),
        description="With `fold`: one validation fold of cross-validation. The train+val text is cut into "
        "`num_folds` chunks; the trial validates on chunk `fold` and trains on the rest "
        "(docs/data.md, *Validation folds*). Both or neither.",
    )
    fold: int | None = pydantic.Field(
        None,
        ge=0,
        json_schema_extra=_in("data"),
        description="The validation chunk, 0 … `num_folds` − 1; see `num_folds`.",
    )
    family: str = pydantic.Field(
        "transformer",
        json_schema_extra=_in("model"),
        description="The model family: `transformer`, `lstm`, `hf` (a Hugging Face causal LM, see `hf` and "
        "`pretrained`) or a factory `package.module:function` of your own (*Your own model*).",
    )
    n_layers: int = pydantic.Field(
        4,
        ge=1,
        le=MAX_LAYERS,
        json_schema_extra=_in("model"),
        description="Transformer blocks, or stacked LSTM layers.",
    )
    n_heads: int = pydantic.Field(
        4, ge=1, le=MAX_HEADS, json_schema_extra=_in("transformer"), description="Attention heads."
    )
    head_dim: int = pydantic.Field(
        32,
        ge=2,
        le=MAX_WIDTH,
        json_schema_extra=_in("transformer"),
        description="Width of a head; d_model = n_heads × head_dim, so every sampled pair is valid. Even for "
        "rotary positions.",
    )
    mlp_ratio: float = pydantic.Field(
        4.0, gt=0, le=64, json_schema_extra=_in("transformer"), description="MLP hidden width over d_model."
    )
    dropout: float = pydantic.Field(
        0.0,
        ge=0,
        lt=1,
        json_schema_extra=_in("model"),
        description="Dropout on embeddings, attention and residuals (and between LSTM layers).",
    )
    block_size: int = pydantic.Field(
        128,
        ge=2,
        le=MAX_BLOCK,
        json_schema_extra=_in("model"),
        description="Context length in tokens; at most the shortest of train and val minus one.",
    )
    positions: Literal["learned", "rotary"] = pydantic.Field(
        "learned",
        json_schema_extra=_in("transformer"),
        description="`learned` position embeddings or `rotary` (RoPE on queries and keys).",
    )
    lstm_hidden: int = pydantic.Field(
        256,
        ge=1,
        le=MAX_WIDTH,
        json_schema_extra=_in("lstm"),
        description="LSTM hidden size (= embedding width, as the embeddings are tied).",
    )
    optimizer: Literal["adamw", "adam", "sgd", "rmsprop"] = pydantic.Field(
        "adamw",
        json_schema_extra=_in("training"),
        description="`sgd` and `rmsprop` use `momentum`; the Adams use `beta1` and `beta2`.",
    )
    lr: float = pydantic.Field(1e-3, gt=0, json_schema_extra=_in("training"), description="Peak learning rate.")
    momentum: float = pydantic.Field(
        0.9, ge=0, lt=1, json_schema_extra=_in("training"), description="SGD and RMSprop momentum."
    )
    beta1: float = pydantic.Field(
        0.9, ge=0, lt=1, json_schema_extra=_in("training"), description="Adam(W)'s first beta."
    )
    beta2: float = pydantic.Field(
        0.99,
        ge=0,
        lt=1,
        json_schema_extra=_in("training"),
        description="Adam(W)'s second beta; also RMSprop's smoothing constant (alpha).",
    )
    weight_decay: float = pydantic.Field(
        0.1,
        ge=0,
        json_schema_extra=_in("training"),
        description="Applied to matrices only (weights, embeddings), never to biases or LayerNorm gains; "
        "decoupled for AdamW, L2 for the others.",
    )
    warmup_tokens: int = pydantic.Field(
        0,
        ge=0,
        le=MAX_TOKENS,
        json_schema_extra=_in("training"),
        description="Linear warmup of the learning rate over this many training tokens.",
    )
    min_lr_ratio: float = pydantic.Field(
        0.1,
        ge=0,
        le=1,
        json_schema_extra=_in("training"),
        description="`cosine` only: after warmup, cosine decay to `lr × min_lr_ratio` at `max_tokens`.",
    )
    lr_schedule: Literal["cosine", "wsd"] = pydantic.Field(
        "cosine",
        json_schema_extra=_in("training"),
        description="`cosine` (warmup, then cosine decay to the floor) or `wsd` (warmup-stable-decay: warmup, "
        "then `lr` held constant, then a cooldown to 0 over the last `cooldown_fraction` of "
        "`max_tokens`, Hägele et al. 2024); see *The wsd schedule and annealed evaluations*.",
    )
    cooldown_fraction: float = pydantic.Field(
        0.2,
        gt=0,
        lt=1,
        json_schema_extra=_in("training"),
        description="`wsd` only: the share of a budget spent cooling down, for the final cooldown (of "
        "`max_tokens`) and for each annealed evaluation's branch (of the tokens at the rung).",
    )
    cooldown_shape: Literal["linear", "1-sqrt"] = pydantic.Field(
        "1-sqrt",
        json_schema_extra=_in("training"),
        description="`wsd` only: `linear` (lr × (1 − p)) or `1-sqrt` (lr × (1 − √p)), p the progress through "
        "the cooldown (0 to 1).",
    )
    grad_clip: float = pydantic.Field(
        1.0,
        ge=0,
        json_schema_extra=_in("training"),
        description="Clip the global gradient norm to this; 0 turns clipping off.",
    )
    batch_size: int = pydantic.Field(
        32, ge=1, le=MAX_BATCH, json_schema_extra=_in("training"), description="Sequences per micro-batch."
    )
    grad_accum: int = pydantic.Field(
        1,
        ge=1,
        le=MAX_BATCH,
        json_schema_extra=_in("training"),
        description="Micro-batches per optimiser step; a step trains batch_size × block_size × grad_accum tokens.",
    )
    max_tokens: int = pydantic.Field(
        1_000_000,
        ge=1,
        le=MAX_TOKENS,
        json_schema_extra=_in("budget"),
        description="The budget: training stops exactly at it (a last, shorter step trains on what is left).",
    )
    eval_every_tokens: int = pydantic.Field(
        100_000,
        ge=1,
        le=MAX_TOKENS,
        json_schema_extra=_in("budget"),
        description="Evaluate (and checkpoint and report) at each multiple, exactly (as for `max_tokens`).",
    )
    eval_max_blocks: int | None = pydantic.Field(
        64,
        ge=1,
        le=2**31 - 1,
        json_schema_extra=_in("evaluation"),
        description="Evaluate on this fixed, evenly spaced subset of the val split's blocks (`null`: all of "
        "them); the same blocks for every trial with the same block_size.",
    )
    sample_tokens: int = pydantic.Field(
        200,
        ge=0,
        le=MAX_BLOCK,
        json_schema_extra=_in("evaluation"),
        description="Length of the text sample generated at each evaluation for TensorBoard (0: none).",
    )
    # Derived by tune_jobs.spec from ASHA's rungs; a wsd run is cooled down at max_tokens anyway, hence "below".
    anneal_at_tokens: list[Annotated[int, pydantic.Field(ge=1, le=MAX_TOKENS)]] = pydantic.Field(
        [],
        max_length=1000,
        json_schema_extra=_in("evaluation"),
        description="`wsd` only: token counts (ASHA's rungs; `textune run` derives them, a spec may not set "
        "them) whose evaluation is of a branch cooled down first; counts at or past `max_tokens` "
        "are ignored.",
    )
    seed: int = pydantic.Field(
        1337,
        ge=0,
        le=MAX_SEED,
        json_schema_extra=_in("training"),
        description="Seeds weights, dropout and the data sampler; on CPU the same seed gives the same run bit for bit.",
    )
    device: Literal["auto", "cpu", "cuda"] = pydantic.Field(
        "auto",
        json_schema_extra=_in("plumbing"),
        description="`auto`: CUDA when visible, else CPU. On CUDA training uses bf16 autocast and TF32.",
    )
    compile: bool = pydantic.Field(
        False, json_schema_extra=_in("plumbing"), description="Wrap the model in `torch.compile`."
    )
    num_threads: int | None = pydantic.Field(
        None,
        ge=1,
        le=1024,
        json_schema_extra=_in("plumbing"),
        description="`torch.set_num_threads` for the trial (give it the trial's CPU allotment).",
    )
    tensorboard_dir: str | None = pydantic.Field(
        None,
        json_schema_extra=_in("plumbing"),
        description="Write TensorBoard event files here (`textune train`: `RUN_DIR/tensorboard`).",
    )
    fault_at_tokens: int | None = pydantic.Field(
        None,
        ge=1,
        le=MAX_TOKENS,
        json_schema_extra=_in("faults"),
        description="Raise `RuntimeError` once training passes this many tokens, in a run started from scratch "
        "only (a run resumed from a checkpoint never raises it, so a retry completes).",
    )
    fault_every_attempt: bool = pydantic.Field(
        False,
        json_schema_extra=_in("faults"),
        description="With `fault_at_tokens`, raise in resumed runs too (the first step past `fault_at_tokens`, "
        "or the first step at all when the checkpoint is already past it), so every retry fails "
        "and the trial ends `errored`; see docs/reliability.md.",
    )

    hf: dict[str, Any] = pydantic.Field(
        {},
        json_schema_extra=_in("hf"),
        description="`family: hf`: `model_type` (`gpt2`, `llama`, ...) and that transformers config's keys; a "
        "key of the config given beside `hf:` (a searched `n_embd`) goes into it (*Hugging Face "
        "models*).",
    )
    pretrained: str | None = pydantic.Field(
        None,
        min_length=1,
        json_schema_extra=_in("hf"),
        description="`family: hf`: a local `save_pretrained` directory (config.json, safetensors) to fine-tune; "
        "never fetched from a hub.",
    )
    adapter: Literal["lora"] | None = pydantic.Field(
        None,
        json_schema_extra=_in("lora"),
        description="`lora`: fine-tune `pretrained` with LoRA adapters (peft): only they train, and checkpoints "
        "hold only them (*Hugging Face models*).",
    )
    lora_r: int = pydantic.Field(
        8, ge=1, le=MAX_WIDTH, json_schema_extra=_in("lora"), description="Rank of the adapters' update matrices."
    )
    lora_alpha: int = pydantic.Field(
        16,
        ge=1,
        le=MAX_WIDTH,
        json_schema_extra=_in("lora"),
        description="The update is scaled by lora_alpha / lora_r.",
    )
    lora_dropout: float = pydantic.Field(
        0.0, ge=0, lt=1, json_schema_extra=_in("lora"), description="Dropout on the adapters' input."
    )
    lora_target_modules: list[str] | None = pydantic.Field(
        None,
        json_schema_extra=_in("lora"),
        description="Names of the modules to adapt (`c_attn`, `q_proj`, ...); unset: peft's default for the "
        "model type.",
    )

    @pydantic.model_validator(mode="before")
    @classmethod
    def _adapter_section_into_keys(cls, data: Any) -> Any:
        # A spec may write peft's nested form, `adapter: {kind: lora, r: 8, alpha: 16, ...}`, while a search space
        # needs flat keys (`lora_r`): the section maps onto them here, the one place that knows both forms.
        if not isinstance(data, dict) or not isinstance(data.get("adapter"), dict):
            return data
        section = dict(data["adapter"])
        if section.get("kind") != "lora":
            raise ValueError(f"adapter.kind must be lora (the one adapter kind), got {section.get('kind')!r}")
        del section["kind"]
        flat = {**data, "adapter": "lora"}
        for key, value in section.items():
            if key not in ADAPTER_KEYS:
                raise ValueError(f"adapter.{key} is not a LoRA setting; use {', '.join(ADAPTER_KEYS)}")
            if f"lora_{key}" in data:
                raise ValueError(
                    f"adapter.{key} and lora_{key} are both set: give it once (a searched value goes "
                    f"in space: as lora_{key})"
                )
            flat[f"lora_{key}"] = value
        return flat

    @pydantic.model_validator(mode="before")
    @classmethod
    def _hf_keys_into_hf(cls, data: Any) -> Any:
        # A search space is flat (space.n_embd), and the transformers config's keys differ per model type: with
        # family hf every key that is not textune's belongs to hf: (models.hf refuses one its config lacks).
        if not isinstance(data, dict) or data.get("family") != "hf":
            return data
        theirs = {key: value for key, value in data.items() if key not in cls.model_fields}
        if not theirs:
            return data
        hf = data.get("hf")
        ours = {key: value for key, value in data.items() if key in cls.model_fields}
        return {**ours, "hf": {**hf, **theirs} if isinstance(hf, dict) else hf}

    @pydantic.field_validator("pretrained")
    @classmethod
    def _absolute_pretrained(cls, value: str | None) -> str | None:
        # Trials run in their own directories, on other nodes too: the path must not depend on where they start.
        return None if value is None else str(Path(value).expanduser().absolute())

    @pydantic.field_validator("family")
    @classmethod
    def _known_family_or_factory(cls, value: str) -> str:
        if value not in BUILT_IN_FAMILIES and not FACTORY_PATTERN.match(value):
            raise ValueError(
                f"must be one of {', '.join(BUILT_IN_FAMILIES)} or a factory of your own as "
                f'"package.module:function", got {value!r}'
            )
        return value

    @pydantic.model_validator(mode="after")
    def _hf_settings_for_hf_only(self) -> TrialConfig:
        if self.family != "hf" and (self.hf or self.pretrained is not None):
            raise ValueError(f"hf and pretrained apply to family hf only (family is {self.family})")
        if self.adapter is not None and (self.family != "hf" or self.pretrained is None):
            raise ValueError(
                "adapter lora fine-tunes a saved model: it needs family hf and pretrained (the base "
                "model's directory, which its checkpoints point to)"
            )
        if self.family == "hf" and "model_type" not in self.hf and self.pretrained is None:
            raise ValueError(
                "family hf needs hf.model_type (a model from a config, e.g. hf: {model_type: gpt2}) "
                "or pretrained (a local save_pretrained directory)"
            )
        return self

    @pydantic.field_validator("*", mode="before")
    @classmethod
    def _plain_numbers(cls, value: Any, info: pydantic.ValidationInfo) -> Any:
        """NumPy scalars become Python numbers; integral floats become ints where the field is an int."""
        if isinstance(value, np.generic):
            value = value.item()
        annotation = cls.model_fields[str(info.field_name)].annotation
        wants_int = annotation is int or annotation == (int | None)
        if wants_int and isinstance(value, float) and math.isfinite(value) and value.is_integer():
            return int(value)
        return value

    @pydantic.model_validator(mode="after")
    def _rotary_needs_even_head_dim(self) -> TrialConfig:
        # Rotary embeddings rotate pairs of channels.
        if self.family == "transformer" and self.positions == "rotary" and self.head_dim % 2:
            raise ValueError(f"head_dim must be even with rotary positions, got {self.head_dim}")
        return self

    @pydantic.model_validator(mode="after")
    def _fold_within_num_folds(self) -> TrialConfig:
        if (self.fold is None) != (self.num_folds is None):
            raise ValueError("fold and num_folds go together: set both (fold 0 .. num_folds - 1) or neither")
        if self.fold is not None and self.num_folds is not None and self.fold >= self.num_folds:
            raise ValueError(f"fold must be below num_folds ({self.num_folds}), got {self.fold}")
        return self

    @pydantic.model_validator(mode="after")
    def _first_rung_before_the_cooldown(self) -> TrialConfig:
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
                f"{(self.max_tokens - first) / self.max_tokens:.4g}, or lower scheduler.grace_period_tokens"
            )
        return self

    @property
    def final_cooldown_tokens(self) -> int:
        """wsd: the tokens of the final cooldown, the last ``cooldown_fraction`` of max_tokens (at least 1)."""
        return max(1, round(self.cooldown_fraction * self.max_tokens))

    @property
    def d_model(self) -> int:
        """Width of the Transformer: a product of two sampled knobs, so no sampled config is invalid."""
        return self.n_heads * self.head_dim

    def budget_below_a_batch(self) -> list[str]:
        """What is wrong with ``max_tokens`` or ``eval_every_tokens`` below one batch (see
        :func:`budget_below_a_batch`); [] when both hold one. Checked where a run starts (``textune train``), not
        on every parse, so configs saved before the check (checkpoints, run directories) stay readable."""
        return budget_below_a_batch(
            ("max_tokens", self.max_tokens),
            ("eval_every_tokens", self.eval_every_tokens),
            f"batch_size {self.batch_size}",
            f"block_size {self.block_size}",
            self.batch_size * self.block_size,
        )

    @property
    def tokens_per_step(self) -> int:
        """Training tokens consumed by one optimiser step."""
        return self.batch_size * self.block_size * self.grad_accum

    def hyperparameters(self) -> dict[str, Any]:
        """The keys of the hyperparameter categories (for TensorBoard's HParams), without unset ones."""
        params = {k: v for k, v in self.model_dump().items() if category_of(k).hyperparameter and v is not None}
        # HParams take flat scalars: hf's keys as hf.KEY (its nested values, rope_parameters, left out), a list
        # (lora_target_modules) as its comma-joined items.
        params.update(
            {
                f"hf.{key}": value
                for key, value in params.pop("hf").items()
                if isinstance(value, (str, int, float, bool))
            }
        )
        return {key: ",".join(map(str, value)) if isinstance(value, list) else value for key, value in params.items()}


def budget_below_a_batch(
    max_tokens: tuple[str, int], eval_every: tuple[str, int], batch_size: str, block_size: str, batch_tokens: int
) -> list[str]:
    """What is wrong with token counts below one batch of ``batch_tokens`` (batch_size × block_size) tokens, each
    count given as (its key, its value) and the sizes as they are to be named; [] when both hold a batch.

    The trainer meets both counts exactly (models.trainer.Trainer.train_until), so a budget below one batch would
    train a single step on part of a batch, and an evaluation interval below one would cut every step to it.
    """
    one_batch = f"one batch, {batch_size} x {block_size} = {batch_tokens} tokens"
    (budget_key, budget), (eval_key, every) = max_tokens, eval_every
    if budget < batch_tokens:
        return [
            f"{budget_key} ({budget}) is less than {one_batch}, so training would be a single step on part of "
            f"a batch; set {budget_key} to at least {batch_tokens}"
        ]
    if every < batch_tokens:
        return [
            f"{eval_key} ({every}) is less than {one_batch}, so every step would be cut to {every} tokens to "
            f"evaluate exactly there and none would train on a whole batch; set {eval_key} to at least {batch_tokens}"
        ]
    return []


def category_of(key: str) -> Category:
    """The category of the TrialConfig field ``key`` (KeyError for a key that is not a field)."""
    extra = TrialConfig.model_fields[key].json_schema_extra
    if not isinstance(extra, dict) or extra.get("category") not in CATEGORIES:
        raise KeyError(f"TrialConfig.{key} has no category: give its Field json_schema_extra=_in(CATEGORY)")
    return CATEGORIES[str(extra["category"])]


# Keys that may change when a run is resumed (models.trial.check_resumable); computing it here also checks, on
# import, that every field has a category.
RESUMABLE_CHANGES = frozenset(key for key in TrialConfig.model_fields if category_of(key).resumable)


def parse_trial_config(config: dict[str, Any], where: str = "trial config") -> TrialConfig:
    """Validate a trial config dict (raises one TextuneError naming the field)."""
    return validate(TrialConfig, config, where)
