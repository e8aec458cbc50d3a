"""The job spec: one YAML file describing a whole search, validated before anything starts.

Every key is documented in docs/job-spec.md. :func:`load_spec` reads the YAML, applies ``--set`` overrides,
validates the spec (unknown keys get a did-you-mean) and then checks the merged trial configuration (fixed
``model:`` params + sampled ``space:`` params + budget) against the trainer's own ``TrialConfig``, so a bad
hyperparameter name or bound fails here and not in the middle of a search.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal, Sequence

import pydantic
from pydantic import NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt

from cluster.storage import StorageOptions
from data_pipeline.config import DataConfig
from textune.config import StrictModel, apply_overrides, load_yaml, parse_yaml, validate
from textune.errors import TextuneError
from tune_jobs.experiment import SPEC_FILE, Experiment
from tune_jobs.space import Dimension, grid_size, trainer_params, validation_samples

# Trial settings the spec derives from its own sections (budget:, seed:, resources:) or sets per trial.
DERIVED_TRIAL_KEYS = frozenset({"dataset_dir", "max_tokens", "eval_every_tokens", "seed", "num_threads",
                                "tensorboard_dir"})
# Derived keys that space: may still search: a grid of seeds repeats every configuration (textune confirm).
SEARCHABLE_DERIVED_KEYS = frozenset({"seed"})

# Experiment names become directories under the storage root; keep them to one plain path component.
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


class Budget(StrictModel):
    """How much each trial may train, and how long the whole search may take."""

    max_tokens: PositiveInt
    eval_every_tokens: PositiveInt
    time_budget_s: PositiveFloat | None = None

    @pydantic.model_validator(mode="after")
    def _eval_within_budget(self) -> "Budget":
        if self.eval_every_tokens > self.max_tokens:
            raise ValueError(f"eval_every_tokens ({self.eval_every_tokens}) exceeds max_tokens ({self.max_tokens}), "
                             "so no trial would ever be evaluated")
        return self


class SearchConfig(StrictModel):
    """Which algorithm proposes configurations."""

    algorithm: Literal["hyperopt", "random", "grid"] = "hyperopt"
    # hyperopt only: random proposals before TPE starts modelling the results.
    n_initial_points: PositiveInt = 5
    # Configurations to try first (hyperopt: as TPE's first points; random/grid: ahead of the samples).
    points_to_evaluate: list[dict[str, Any]] = []
    # Warm start from the best `warm_start_top_k` trials of a previous experiment directory.
    warm_start_from: str | None = None
    warm_start_top_k: PositiveInt = 3


class SchedulerConfig(StrictModel):
    """When to stop trials early. ASHA's clock is training tokens, so different batch sizes compare fairly."""

    kind: Literal["asha", "fifo"] = "asha"
    # First rung, in training tokens; later rungs are grace_period_tokens * reduction_factor**k up to max_tokens.
    grace_period_tokens: PositiveInt | None = None
    reduction_factor: float = pydantic.Field(3.0, gt=1)


class Resources(StrictModel):
    """What one trial asks Ray for. Fractional GPUs pack several small trials on one GPU."""

    cpu: PositiveFloat = 1.0
    gpu: NonNegativeFloat = 0.0

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


class JobSpec(StrictModel):
    """A whole search. See docs/job-spec.md for every key."""

    name: str
    data: DataConfig
    model: dict[str, Any] = {}
    budget: Budget
    space: dict[str, Dimension]
    search: SearchConfig = SearchConfig()
    scheduler: SchedulerConfig = SchedulerConfig()
    num_samples: PositiveInt = 1
    max_concurrent_trials: PositiveInt | None = None
    resources: Resources = Resources()
    metric: Literal["val_bpc", "val_ppl"] = "val_bpc"
    mode: Literal["min", "max"] = "min"
    storage: str = "experiments"
    storage_options: StorageOptions = StorageOptions()
    seed: int = 0
    # Retries of a crashed trial (a lost node, an exception) from its latest checkpoint before it counts as errored.
    max_failures: NonNegativeInt = 2
    keep_checkpoints: PositiveInt = 2

    @pydantic.field_validator("name")
    @classmethod
    def _plain_name(cls, name: str) -> str:
        if not NAME_PATTERN.match(name):
            raise ValueError("an experiment name is one directory name under the storage root: letters, digits, "
                             "'.', '_' or '-', starting with a letter or digit (no '/', '..' or absolute paths)")
        return name

    @pydantic.field_validator("space")
    @classmethod
    def _not_empty(cls, space: dict[str, Dimension]) -> dict[str, Dimension]:
        if not space:
            raise ValueError("the search space is empty: add at least one hyperparameter to search")
        return space

    @pydantic.model_validator(mode="after")
    def _consistent(self) -> "JobSpec":
        derived = sorted(DERIVED_TRIAL_KEYS & (set(self.model) | (set(self.space) - SEARCHABLE_DERIVED_KEYS)))
        if derived:
            raise ValueError(f"{', '.join(derived)} cannot be set under model: or space:; textune derives it "
                             "(budget.max_tokens, budget.eval_every_tokens, seed, resources.cpu, the dataset; "
                             "only seed may be searched under space:)")
        both = sorted(set(self.model) & set(self.space))
        if both:
            raise ValueError(f"{', '.join(both)}: fixed under model: and searched under space:; keep one")
        grids = [name for name, d in self.space.items() if d.kind == "grid"]
        if self.search.algorithm == "hyperopt" and grids:
            raise ValueError(f"hyperopt cannot search grid dimensions ({', '.join(grids)}); write them as "
                             "choice: [...] or set search.algorithm to grid or random")
        if self.search.algorithm == "grid" and len(grids) != len(self.space):
            others = sorted(set(self.space) - set(grids))
            raise ValueError(f"search.algorithm grid enumerates grid dimensions only, but {', '.join(others)} "
                             "are sampled; write them as grid: [...] or use search.algorithm random")
        grace = self.scheduler.grace_period_tokens
        if grace is not None and grace > self.budget.max_tokens:
            raise ValueError(f"scheduler.grace_period_tokens ({grace}) exceeds budget.max_tokens "
                             f"({self.budget.max_tokens}); no trial could reach the first rung")
        return self

    @property
    def grace_period_tokens(self) -> int:
        """ASHA's first rung: the spec's value, or the first evaluation."""
        return self.scheduler.grace_period_tokens or self.budget.eval_every_tokens

    @property
    def expected_trials(self) -> int:
        """Trials the search runs: every grid point once per sample (points to evaluate count as samples)."""
        return grid_size(self.space) * self.num_samples


def load_spec(path: str | Path, overrides: Sequence[str] = (), name: str | None = None) -> JobSpec:
    """Read, override and validate a job spec; check the trial configs it will produce."""
    data = apply_overrides(load_yaml(path), overrides)
    if name is not None:
        data["name"] = name
    spec = validate(JobSpec, data, f"job spec {path}")
    check_trial_configs(spec, f"job spec {path}")
    return spec


def load_saved_spec(experiment: Experiment) -> JobSpec:
    """The spec an experiment was started with (read-only commands need no Ray for it)."""
    filesystem, path = experiment.filesystem()
    where = f"saved job spec {experiment.root}/{SPEC_FILE}"
    with filesystem.open_input_stream(f"{path}/{SPEC_FILE}") as handle:
        data = parse_yaml(handle.read().decode("utf-8", "replace"), where)
    return validate(JobSpec, data, where)


def fixed_trial_params(spec: JobSpec, dataset_dir: str) -> dict[str, Any]:
    """What every trial shares: the dataset, the fixed model params, the budget, the seed and the CPU threads."""
    return {
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
    """Validate fixed + sampled params against the trainer's TrialConfig at every edge of the space."""
    from models.config import parse_trial_config

    # The dataset is prepared later; any non-empty path validates here.
    fixed = fixed_trial_params(spec, dataset_dir="(prepared dataset)")
    for sample in validation_samples(spec.space):
        try:
            parse_trial_config({**fixed, **trainer_params(sample)}, f"{where} (model: + space: {sample})")
        except TextuneError as exc:
            raise TextuneError(exc.message, "Fix model: or space: so every sampled value is a valid trial "
                                            "setting, then run again.") from exc
