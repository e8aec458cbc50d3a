"""The job spec: one YAML file describing a whole search, validated before anything starts.

Every key is documented in docs/job-spec.md. :func:`load_spec` reads the YAML, applies ``--set`` overrides,
validates the spec (unknown keys get a did-you-mean; every number has a finite range the code honours; the
checks across keys report every violation at once) and then checks the merged trial configuration (fixed
``model:`` params + every value a ``space:`` dimension produces + budget) and every point to evaluate against the
trainer's own ``TrialConfig``, so a bad hyperparameter name, bound, step or point fails here and not in the middle
of a search. What needs the prepared dataset or another experiment is checked by tune_jobs.preflight, still
before Ray starts.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import pydantic
from pydantic import Field

from cluster.storage import StorageOptions
from data_pipeline.config import DataConfig
from models.config import MAX_SEED, MAX_TOKENS, TrialConfig, budget_below_a_batch
from textune.config import (
    StrictModel,
    apply_overrides,
    describe_error,
    did_you_mean,
    load_yaml,
    parse_yaml,
    validate,
)
from textune.errors import TextuneError
from tune_jobs.experiment import SPEC_FILE, Experiment
from tune_jobs.space import Dimension, base_sample, grid_size, trainer_params, validation_samples

# Trial settings the spec derives from its own sections (budget:, seed:, resources:) or sets per trial.
DERIVED_TRIAL_KEYS = frozenset(
    {"dataset_dir", "max_tokens", "eval_every_tokens", "seed", "num_threads", "tensorboard_dir", "anneal_at_tokens"}
)
# Derived keys that space: may still search: a grid of seeds repeats every configuration (textune confirm).
SEARCHABLE_DERIVED_KEYS = frozenset({"seed"})

# Experiment names become directories under the storage root; keep them to one plain path component.
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
NAME_RULE = (
    "an experiment name is one directory name under the storage root: 1 to 100 characters, each a "
    "letter, digit, '.', '_' or '-', the first a letter or digit (so no '/', '..' or absolute paths)"
)

# Finite ranges for every number of a spec: what the code and Ray can honour, far beyond any real search.
MAX_TIME_BUDGET_S = 366 * 24 * 3600  # one year; leave time_budget_s out for no limit
MAX_SAMPLES = 100_000
MAX_CONCURRENT = 10_000
MAX_CPUS, MAX_GPUS = 1024, 64  # per trial, i.e. on one node
MAX_FAILURES = 100
MAX_KEPT_CHECKPOINTS = 1000
# ASHA with more rungs than this has a reduction_factor too close to 1: at 1.0000001 Ray builds millions of
# rungs, takes minutes to set up and never stops a trial.
MAX_RUNGS = 20
# Search algorithms that fit TPE (HyperOpt's, which takes no grid dimensions), and those that model ASHA's rungs.
TPE_ALGORITHMS = frozenset({"hyperopt", "bohb"})
RUNG_ALGORITHMS = frozenset({"bohb"})
# Without budget.eval_every_tokens, a trial evaluates this many times (the shipped specs' rhythm).
DEFAULT_EVALUATIONS = 16


class SpecModel(StrictModel):
    """A job spec section: no infinity or NaN in any float (``--set resources.cpu=.inf`` is refused here)."""

    model_config = pydantic.ConfigDict(allow_inf_nan=False)


class Budget(SpecModel):
    """How much each trial may train, and how long the whole search may take."""

    max_tokens: int = Field(ge=1, le=MAX_TOKENS, description="Training tokens per trial; also ASHA's `max_t`.")
    # Required here, but filled in from max_tokens by _eval_follows_budget, so it follows max_tokens.
    eval_every_tokens: int = Field(
        ge=1,
        le=MAX_TOKENS,
        json_schema_extra={"shown_default": f"`max_tokens / {DEFAULT_EVALUATIONS}` rounded up"},
        description="Evaluate, checkpoint and report every this many training tokens; at most `max_tokens`. Left "
        f"out, it follows `max_tokens` ({DEFAULT_EVALUATIONS} evaluations per trial), and so does "
        "`scheduler.grace_period_tokens` unless set.",
    )
    time_budget_s: float | None = Field(
        None,
        gt=0,
        le=MAX_TIME_BUDGET_S,
        description="Wall-clock limit for the whole search, in seconds (at most a year). Trials still running are "
        "left unfinished; `textune resume` continues them.",
    )

    @pydantic.model_validator(mode="before")
    @classmethod
    def _eval_follows_budget(cls, data: Any) -> Any:
        max_tokens = data.get("max_tokens") if isinstance(data, dict) else None
        if (
            isinstance(max_tokens, (int, float))
            and not isinstance(max_tokens, bool)
            and math.isfinite(max_tokens)
            and "eval_every_tokens" not in data
        ):
            return {**data, "eval_every_tokens": max(1, math.ceil(max_tokens / DEFAULT_EVALUATIONS))}
        return data


class SearchConfig(SpecModel):
    """Which algorithm proposes configurations."""

    # bohb is tune_jobs.bohb's rung-aware TPE.
    algorithm: Literal["hyperopt", "random", "grid", "bohb"] = Field(
        "hyperopt",
        description="`hyperopt`: TPE (no `grid` dimensions). `bohb`: TPE per ASHA rung, proposing from the highest "
        "rung with d + 1 results ([tuning.md](tuning.md), *Rung-aware TPE*); needs "
        "`scheduler.kind: asha`, no `grid` dimensions. `random`: seeded random sampling, `grid` "
        "dimensions crossed. `grid`: every dimension must be `grid`.",
    )
    n_initial_points: int = Field(
        5,
        ge=1,
        le=MAX_SAMPLES,
        description="`hyperopt` only: random proposals before TPE starts modelling results (`bohb` waits for "
        "d + 1 results at a rung instead).",
    )
    points_to_evaluate: list[dict[str, Any]] = Field(
        [],
        description="Configurations to run first (`hyperopt`: as TPE's first points; `random`/`grid`: ahead of the "
        "samples). Each gives a value for every searched key (only `grid` keys may be left out: they "
        "are crossed with the point), and each value must be one its dimension can produce: one of a "
        "`choice`/`grid`'s values, within `uniform`/`loguniform` bounds, a whole number within "
        "`randint`'s, a multiple of `q` within `quniform`'s. Keys that are not searched are refused "
        "(fixed settings go under `model`).",
    )
    warm_start_from: str | None = Field(
        None,
        description="A previous experiment directory: its `warm_start_top_k` best trials' configs are run first "
        "(only keys of this space are taken; configs lacking one are skipped). The rest are checked "
        "like `points_to_evaluate` before Ray starts: a config outside this space is refused as "
        "`search.warm_start_from[i].KEY` (i = 0 for the best trial).",
    )
    warm_start_top_k: int = Field(3, ge=1, le=MAX_SAMPLES, description="See `warm_start_from`.")


class SchedulerConfig(SpecModel):
    """When to stop trials early. ASHA's clock is training tokens, so different batch sizes compare fairly."""

    kind: Literal["asha", "fifo"] = Field(
        "asha",
        description="`asha`: asynchronous successive halving on **training tokens** (so trials with different "
        "batch sizes compare fairly). `fifo`: no early stopping.",
    )
    grace_period_tokens: int | None = Field(
        None,
        ge=1,
        le=MAX_TOKENS,
        json_schema_extra={"shown_default": "`budget.eval_every_tokens`"},
        description="ASHA's first rung, in training tokens; at most `budget.max_tokens`.",
    )
    # Finite, like every spec float; the rung count is checked across keys by JobSpec._rungs.
    reduction_factor: float = Field(
        3.0,
        gt=1,
        description="Rungs at `grace_period_tokens × factor^k` tokens up to `max_tokens`; at each rung a trial "
        "continues only if it is in the top 1/factor of the trials recorded there so far. At most "
        f"**{MAX_RUNGS} rungs**: a factor so close to 1 that it gives more "
        "(1.0000001 gives millions, which Ray would set up for minutes without ever stopping a trial) "
        "is refused with the least factor that fits.",
    )


class Resources(SpecModel):
    """What one trial asks Ray for. Fractional GPUs pack several small trials on one GPU."""

    cpu: float = Field(
        1.0,
        gt=0,
        le=MAX_CPUS,
        description="CPUs per trial; torch uses exactly `max(1, int(cpu))` threads, so concurrent trials never "
        "oversubscribe the cores.",
    )
    gpu: float = Field(
        0.0,
        ge=0,
        le=MAX_GPUS,
        description="GPUs per trial: fractions like 0.25 pack small trials on one GPU; above 1 only whole numbers. "
        "`gpu: 0` runs on the CPU. A request larger than the largest node fails fast instead of "
        "pending forever.",
    )

    @pydantic.field_validator("gpu")
    @classmethod
    def _whole_above_one(cls, gpu: float) -> float:
        if gpu > 1 and gpu != int(gpu):
            raise ValueError("more than one GPU per trial must be a whole number (Ray cannot split a second GPU)")
        return gpu

    @property
    def threads(self) -> int:
        """Torch CPU threads for a trial: exactly its CPU allotment, at least one."""
        return max(1, int(self.cpu))


class JobSpec(SpecModel):
    """A whole search. See docs/job-spec.md for every key."""

    name: str = Field(
        description=f"{NAME_RULE[0].upper()}{NAME_RULE[1:]}. `textune run` refuses an existing name and tells you "
        "the `textune resume` command instead."
    )
    data: DataConfig = Field(
        description="The corpus and tokenizer: data_pipeline's `DataConfig` ([data.md](data.md), *The `data:` "
        "section*). Prepared once by the driver before any trial starts; trials read the "
        "memory-mapped shards."
    )
    model: dict[str, Any] = Field(
        {},
        description="Fixed trial settings shared by every trial: any trial-config key ([models.md](models.md)), "
        "e.g. `family`, `n_layers`, `block_size`, `optimizer`, `device`, or the schedule keys "
        "`lr_schedule`, `cooldown_fraction`, `cooldown_shape` (see *Annealed rung evaluations*). A key "
        "may be fixed here or searched under `space`, not both. The keys textune derives (`dataset_dir`, "
        "`max_tokens`, `eval_every_tokens`, `seed`, `num_threads`, `tensorboard_dir`, "
        "`anneal_at_tokens`) are refused here.",
    )
    budget: Budget = Field(description="How much each trial trains; see *`budget`* below.")
    space: dict[str, Dimension] = Field(
        description="Not empty. Hyperparameter name (a trial-config key) → one search dimension; see *`space`* below."
    )
    search: SearchConfig = Field(SearchConfig(), description="The search algorithm; see *`search`* below.")
    scheduler: SchedulerConfig = Field(SchedulerConfig(), description="Early stopping; see *`scheduler`* below.")
    num_samples: int = Field(
        1,
        ge=1,
        le=MAX_SAMPLES,
        description="Trials to sample. With `grid` dimensions each sample runs every grid point, so the search runs "
        "`num_samples × (product of grid sizes)` trials. `points_to_evaluate` count among the samples. "
        "When every dimension is a `grid`, nothing is sampled and each further sample would rerun the "
        "whole grid identically (same configs, same training seed), so `num_samples` above 1 plus the "
        "number of `points_to_evaluate` is refused: to train every grid point with several seeds, add "
        "`seed: {grid: [0, 1, ...]}` to `space`.",
    )
    max_concurrent_trials: int | None = Field(
        None,
        ge=1,
        le=MAX_CONCURRENT,
        json_schema_extra={"shown_default": "as many as fit"},
        description="At most this many trials at once (HyperOpt is wrapped in a ConcurrencyLimiter so it proposes "
        "from more finished results).",
    )
    resources: Resources = Field(Resources(), description="What one trial asks Ray for; see *`resources`* below.")
    metric: Literal["val_bpc", "val_ppl"] = Field(
        "val_bpc",
        description="What the searcher and scheduler optimise. `val_bpc` (bits per character) compares across "
        "tokenizers; `val_ppl` is per token.",
    )
    # Only min: both metrics are losses, and `max` would have the searcher and ASHA keep the worst trials.
    mode: Literal["min"] = Field(
        "min", description="Direction of `metric`: `min` only (both metrics are minimised; `max` is refused)."
    )
    storage: str = Field(
        "experiments",
        description="Where experiments live: a local directory (relative to the working directory) or a URI such "
        "as `s3://bucket/prefix` (pyarrow filesystems). The experiment is `STORAGE/NAME/`.",
    )
    storage_options: StorageOptions = Field(
        StorageOptions(),
        description="How to reach remote storage (cluster.storage's `StorageOptions`): `endpoint_override` "
        "(HOST:PORT or URL of an S3-compatible server; default `$AWS_ENDPOINT_URL_S3`, "
        "`$AWS_ENDPOINT_URL`), `scheme` (`http`/`https`), `region`, `anonymous` (default false), "
        "`min_free_gb` (free space a local storage path must have, default 1). The storage is checked "
        "writable before anything starts. With remote storage the prepared dataset is uploaded once "
        "and each node caches it on first use.",
    )
    seed: int = Field(
        0,
        ge=0,
        le=MAX_SEED,
        description="Seeds the searcher (HyperOpt's `random_state_seed`, BasicVariantGenerator's `random_state`) "
        "and every trial's training; NumPy's seed range. A rerun of the same spec reproduces "
        "everything with `max_concurrent_trials: 1`; with more slots only the `points_to_evaluate`, "
        "HyperOpt's first `n_initial_points` proposals and the configs of `random` and `grid`, while "
        "later HyperOpt proposals and ASHA's stop decisions depend on the order results arrive "
        "([tuning.md](tuning.md), *Reproducibility*).",
    )
    max_failures: int = Field(
        2,
        ge=0,
        le=MAX_FAILURES,
        description="Retries of a trial that crashed (an exception, or its node was lost) from its latest intact "
        "checkpoint before it is recorded as `errored`; 0 turns retries off. See "
        "[reliability.md](reliability.md).",
    )
    keep_checkpoints: int = Field(
        2,
        ge=1,
        le=MAX_KEPT_CHECKPOINTS,
        description="Checkpoints kept per trial: the best by `metric`, and always the latest. With 2 or more, a "
        "trial whose latest checkpoint is damaged falls back to an intact one "
        "([reliability.md](reliability.md)).",
    )

    @pydantic.field_validator("name")
    @classmethod
    def _plain_name(cls, name: str) -> str:
        if not NAME_PATTERN.match(name):
            length = f" (this one has {len(name)})" if len(name) > 100 else ""
            raise ValueError(NAME_RULE + length)
        return name

    @pydantic.field_validator("mode", mode="before")
    @classmethod
    def _minimised(cls, mode: Any) -> Any:
        if mode == "max":
            raise ValueError(
                "both metrics (val_bpc, val_ppl) are minimised, lower is better: with max the searcher "
                "and ASHA would keep the worst trials; remove mode: or set it to min"
            )
        return mode

    @pydantic.field_validator("space")
    @classmethod
    def _not_empty(cls, space: dict[str, Dimension]) -> dict[str, Dimension]:
        if not space:
            raise ValueError("the search space is empty: add at least one hyperparameter to search")
        return space

    @pydantic.model_validator(mode="after")
    def _consistent(self) -> JobSpec:
        # Every rule across keys is checked and all that fail are reported together: one run to fix them all.
        problems = [
            problem
            for check in (self._derived_keys, self._grids, self._budget_fits, self._rungs, self._rung_model)
            for problem in check()
        ]
        if len(problems) == 1:
            raise ValueError(problems[0])
        if problems:
            raise ValueError(f"{len(problems)} problems: " + "; ".join(f"({n}) {p}" for n, p in enumerate(problems, 1)))
        return self

    def _derived_keys(self) -> list[str]:
        problems = []
        derived = sorted(DERIVED_TRIAL_KEYS & (set(self.model) | (set(self.space) - SEARCHABLE_DERIVED_KEYS)))
        if derived:
            problems.append(
                f"{', '.join(derived)} cannot be set under model: or space:; textune derives it "
                "(budget.max_tokens, budget.eval_every_tokens, seed, resources.cpu, the dataset, "
                "ASHA's rungs; only seed may be searched under space:)"
            )
        both = sorted(set(self.model) & set(self.space))
        if both:
            problems.append(f"{', '.join(both)}: fixed under model: and searched under space:; keep one")
        return problems

    def _grids(self) -> list[str]:
        problems = []
        grids = [name for name, d in self.space.items() if d.kind == "grid"]
        if self.search.algorithm in TPE_ALGORITHMS and grids:
            problems.append(
                f"{self.search.algorithm} cannot search grid dimensions ({', '.join(grids)}); write "
                "them as choice: [...] or set search.algorithm to grid or random"
            )
        if self.search.algorithm == "grid" and len(grids) != len(self.space):
            others = sorted(set(self.space) - set(grids))
            problems.append(
                f"search.algorithm grid enumerates grid dimensions only, but {', '.join(others)} "
                "are sampled; write them as grid: [...] or use search.algorithm random"
            )
        # With nothing sampled, every sample beyond the points to evaluate runs the whole grid again, trial for
        # trial identical (same config, same training seed): twice the compute for nothing.
        repeats = self.num_samples - len(self.search.points_to_evaluate)
        if grids and len(grids) == len(self.space) and repeats > 1:
            seeds = (
                "; to train every grid point with more seeds, add more seeds to space.seed's grid"
                if "seed" in self.space
                else "; to train every grid point with several seeds, add seed: {grid: [0, 1, ...]} to space:"
            )
            points = len(self.search.points_to_evaluate)
            fits = f"{points + 1} (one per point to evaluate, and 1 for the grid)" if points else "1"
            problems.append(
                f"num_samples ({self.num_samples}) would run every grid point {repeats} times with the "
                "same training seed, identically: every dimension is a grid, so nothing is sampled. "
                f"Set num_samples to {fits}{seeds}"
            )
        return problems

    def _rung_model(self) -> list[str]:
        if self.search.algorithm in RUNG_ALGORITHMS and self.scheduler.kind != "asha":
            return [
                f"search.algorithm {self.search.algorithm} models the results at each ASHA rung, but "
                f"scheduler.kind {self.scheduler.kind} has no rungs to model; set scheduler.kind to asha, or "
                "search.algorithm to hyperopt"
            ]
        return []

    def _budget_fits(self) -> list[str]:
        problems = []
        budget, grace = self.budget, self.scheduler.grace_period_tokens
        follow = " (leave it out and it follows budget.max_tokens)"
        if budget.eval_every_tokens > budget.max_tokens:
            problems.append(
                f"budget.eval_every_tokens ({budget.eval_every_tokens}) exceeds budget.max_tokens "
                f"({budget.max_tokens}), so no trial would ever be evaluated{follow}"
            )
        if grace is not None and grace > budget.max_tokens:
            problems.append(
                f"scheduler.grace_period_tokens ({grace}) exceeds budget.max_tokens "
                f"({budget.max_tokens}); no trial could reach the first rung{follow}"
            )
        return problems

    def _rungs(self) -> list[str]:
        if self.scheduler.kind != "asha" or self.grace_period_tokens > self.budget.max_tokens:
            return []
        count = self.rung_count
        if count <= MAX_RUNGS:
            return []
        ratio = self.budget.max_tokens / self.grace_period_tokens
        # floor(log(ratio) / log(f)) + 1 <= MAX_RUNGS holds for every f >= ratio ** (1 / (MAX_RUNGS - 1)).
        least = math.ceil(ratio ** (1 / (MAX_RUNGS - 1)) * 1000) / 1000
        return [
            f"scheduler.reduction_factor ({self.scheduler.reduction_factor!r}) gives ASHA {count:,} rungs "
            f"between grace_period_tokens ({self.grace_period_tokens}) and budget.max_tokens "
            f"({self.budget.max_tokens}); at most {MAX_RUNGS} are allowed: set reduction_factor to {least:g} "
            "or more, or raise scheduler.grace_period_tokens"
        ]

    def largest_setting(self, key: str) -> tuple[Any, str]:
        """The largest value of the trial key ``key`` a trial can get (of those its space: dimension produces, or
        fixed under model:, or the trial config's default) and where it comes from, as messages say it:
        ``the largest of space.KEY``, ``model.KEY`` or ``the trial default``."""
        if key in self.space:
            values = self.space[key].produced_values()
            numbers = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
            # A value that is no number (null in a choice) is the trial config check's to refuse.
            return max(numbers) if numbers else values[-1], f"the largest of space.{key}"
        if key in self.model:
            return self.model[key], f"model.{key}"
        return TrialConfig.model_fields[key].default, "the trial default"

    @property
    def grace_period_tokens(self) -> int:
        """ASHA's first rung: the spec's value, or the first evaluation."""
        return self.scheduler.grace_period_tokens or self.budget.eval_every_tokens

    @property
    def rung_milestones(self) -> list[float]:
        """ASHA's rungs in training tokens, lowest first, as Ray's single bracket places them (empty for FIFO)."""
        if self.scheduler.kind == "fifo":
            return []
        grace, factor = self.grace_period_tokens, self.scheduler.reduction_factor
        return [grace * factor**k for k in range(self.rung_count)]

    @property
    def rung_count(self) -> int:
        """ASHA's rungs from grace_period_tokens up to max_tokens, as Ray's single bracket counts them."""
        ratio = self.budget.max_tokens / self.grace_period_tokens
        return int(math.log(ratio) / math.log(self.scheduler.reduction_factor) + 1)

    @property
    def expected_trials(self) -> int:
        """Trials the search runs: every grid point once per sample (points to evaluate count as samples)."""
        return grid_size(self.space) * self.num_samples


def load_spec(path: str | Path, overrides: Sequence[str] = (), name: str | None = None) -> JobSpec:
    """Read, override and validate a job spec; check the trial configs it will produce."""
    data = apply_overrides(load_yaml(path, "job spec"), overrides)
    if name is not None:
        data["name"] = name
    spec = validate(JobSpec, data, f"job spec {path}")
    check_trial_configs(spec, f"job spec {path}")
    check_budget_holds_a_batch(spec, f"job spec {path}")
    check_device_gets_a_gpu(spec, f"job spec {path}")
    return spec


def load_saved_spec(experiment: Experiment) -> JobSpec:
    """The spec an experiment was started with (read-only commands need no Ray for it)."""
    filesystem, path = experiment.filesystem()
    where = f"saved job spec {experiment.root}/{SPEC_FILE}"
    with filesystem.open_input_stream(f"{path}/{SPEC_FILE}") as handle:
        data = parse_yaml(handle.read().decode("utf-8", "replace"), where)
    return validate(JobSpec, data, where)


def may_use_wsd(spec: JobSpec) -> bool:
    """Whether a trial of ``spec`` can train with ``lr_schedule: wsd`` (fixed under model: or a searched value)."""
    searched = spec.space.get("lr_schedule")
    return spec.model.get("lr_schedule") == "wsd" or (
        searched is not None and searched.kind in ("choice", "grid") and "wsd" in searched.values
    )


def fixed_trial_params(spec: JobSpec, dataset_dir: str) -> dict[str, Any]:
    """What every trial shares: the dataset, the fixed model params, the budget, the seed and the CPU threads;
    and, where trials may use wsd under ASHA, the rungs below max_tokens to evaluate annealed at."""
    rungs = [math.ceil(t) for t in spec.rung_milestones if t < spec.budget.max_tokens] if may_use_wsd(spec) else []
    return {
        **({"anneal_at_tokens": rungs} if rungs else {}),
        **spec.model,
        "dataset_dir": dataset_dir,
        "max_tokens": spec.budget.max_tokens,
        "eval_every_tokens": spec.budget.eval_every_tokens,
        "seed": spec.seed,
        "num_threads": spec.resources.threads,
        # A trial without a GPU must not pick up a GPU Ray did not give it.
        "device": spec.model.get("device", "auto" if spec.resources.gpu else "cpu"),
    }


def check_trial_configs(spec: JobSpec, where: str) -> None:
    """Validate fixed + sampled params against the trainer's TrialConfig for every value each dimension produces
    (and pairs of two dimensions' edge values), then every point in search.points_to_evaluate.

    Raises one TextuneError naming the key, e.g. ``space.n_layers = 1.5`` or
    ``search.points_to_evaluate[0].n_heads``.
    """
    from models.config import TrialConfig, parse_trial_config

    # The dataset is prepared later; any non-empty path validates here.
    fixed = fixed_trial_params(spec, dataset_dir="(prepared dataset)")
    for sample, varied in validation_samples(spec.space):
        config = {**fixed, **trainer_params(sample)}
        try:
            TrialConfig.model_validate(config)
            continue
        except pydantic.ValidationError as exc:
            # A key fixed under model: is refused whatever the space samples: name it, not the sampled values.
            own = [e for e in exc.errors() if e["loc"] and e["loc"][0] in spec.model and e["loc"][0] not in spec.space]
            if own:
                raise TextuneError(
                    f"{where}: {describe_error(own[0], TrialConfig, under=('model',))}",
                    f"Fix model.{own[0]['loc'][0]} (fixed for every trial), then run again.",
                ) from exc
        # The base sample (nothing varied) takes every dimension's lowest value: any of them may be the culprit.
        shown = ", ".join(
            f"space.{name} = {value!r} ({spec.space[name].kind} {spec.space[name].values})"
            for name, value in (varied or sample).items()
        )
        try:
            parse_trial_config(config, f"{where}: with {shown}")
        except TextuneError as exc:
            raise TextuneError(
                exc.message,
                "Fix model: or space: so every value a dimension can produce is a "
                "valid trial setting (a whole-number key takes randint, choice, or "
                "quniform with a whole q), then run again.",
            ) from exc
    for index, point in enumerate(spec.search.points_to_evaluate):
        check_point(spec, point, f"{where}: search.points_to_evaluate[{index}]")


def check_budget_holds_a_batch(spec: JobSpec, where: str) -> None:
    """Refuse a ``budget.max_tokens`` or ``budget.eval_every_tokens`` below one batch (batch_size x block_size
    tokens) of the largest the space can sample (models.config.budget_below_a_batch says why that is wrong).

    Checked for a new run (:func:`load_spec`), after the trial configs, so a misspelt batch_size under model: is
    named before its default is blamed; not for a saved spec (an experiment run before the check stays readable).
    """
    # The trial configs are checked, so both are whole numbers (a quniform's may come as 16.0).
    (batch_size, batch_from), (block_size, block_from) = (spec.largest_setting(k) for k in ("batch_size", "block_size"))
    problems = budget_below_a_batch(
        ("budget.max_tokens", spec.budget.max_tokens),
        ("budget.eval_every_tokens", spec.budget.eval_every_tokens),
        f"batch_size {int(batch_size)} ({batch_from})",
        f"block_size {int(block_size)} ({block_from})",
        int(batch_size) * int(block_size),
    )
    if problems:
        raise TextuneError(
            f"{where}: {problems[0]}.",
            "Raise the budget, or lower batch_size or block_size (left out, budget.eval_every_tokens is "
            f"budget.max_tokens / {DEFAULT_EVALUATIONS}).",
        )


def check_device_gets_a_gpu(spec: JobSpec, where: str) -> None:
    """Refuse ``device: cuda`` (under model:, or a value space.device produces) with ``resources.gpu: 0``: Ray
    gives such a trial no GPU, so it could never train (the trainer refuses cuda without one).

    Checked for a new run (:func:`load_spec`), not for a saved spec, like :func:`check_budget_holds_a_batch`.
    """
    if spec.resources.gpu > 0:
        return
    if spec.model.get("device") == "cuda":
        named, fix = "model.device is cuda", "set model.device to cpu or auto"
    elif "device" in spec.space and "cuda" in spec.space["device"].produced_values():
        named, fix = "space.device can be cuda", "remove cuda from space.device"
    else:
        return
    raise TextuneError(
        f"{where}: {named}, but resources.gpu is 0, so Ray gives no trial a GPU and such a trial could never run.",
        f"Set resources.gpu (e.g. 1, or 0.5 to share one GPU), or {fix}.",
    )


def check_point(spec: JobSpec, point: dict[str, Any], label: str) -> None:
    """Refuse a configuration to evaluate first that the space cannot produce or the trainer would refuse.

    ``label`` names the point in messages (``job spec J: search.points_to_evaluate[0]``); a key is named as
    ``LABEL.KEY``. A point gives every searched key; grid keys it leaves out are crossed with it.
    """
    from models.config import TrialConfig, parse_trial_config

    hint = "Give every point a value for each searched key that its space: dimension can produce."
    unknown = sorted(set(point) - set(spec.space), key=str)
    if unknown:
        name = str(unknown[0])
        fixed = " (to fix it for every trial, set it under model:)" if name in TrialConfig.model_fields else ""
        raise TextuneError(
            f"{label}.{name} is not a searched key{fixed}.{did_you_mean(name, spec.space)} "
            f"Searched keys: {', '.join(spec.space)}.",
            hint,
        )
    missing = [name for name, d in spec.space.items() if name not in point and d.kind != "grid"]
    if missing:
        raise TextuneError(
            f"{label}.{missing[0]} is missing: a point gives a value for every searched key "
            f"(missing: {', '.join(missing)}; only grid keys may be left out, to be crossed with "
            "the point).",
            hint,
        )
    for name, value in point.items():
        refusal = spec.space[name].refusal(value)
        if refusal is not None:
            raise TextuneError(f"{label}.{name} = {value!r} {refusal}.", hint)
    config = {**base_sample(spec.space), **point}
    parse_trial_config({**fixed_trial_params(spec, dataset_dir="(prepared dataset)"), **trainer_params(config)}, label)
