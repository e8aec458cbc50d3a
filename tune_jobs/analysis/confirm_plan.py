"""The plan of a confirmation run: which configs, which seeds and folds, as a job spec of its own.

The top-k distinct configs of a search (best first, finite metric) are re-trained at the search's full budget
(``budget.max_tokens``), with no early stopping, once per seed and validation fold. The plan is an ordinary
:class:`~tune_jobs.spec.JobSpec` stored at ``EXPERIMENT/confirm/`` so the search machinery runs and resumes it
as it runs any search:

- ``search.points_to_evaluate`` holds the candidate configs, best first, and ``num_samples`` equals their
  number, so Ray's variant generator proposes exactly those configs and samples nothing;
- ``space`` adds ``seed`` and ``fold`` as grid dimensions, which Ray crosses with every point: configs x seeds
  x folds trials, each at the full budget under the FIFO scheduler.

Seeds are fresh (``spec.seed + 1`` onwards): the search trained every trial with ``spec.seed``, so reusing it
would replay the lucky draw that may have made the winner.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import pandas as pd
import pydantic

from textune.config import StrictModel, validate
from textune.errors import TextuneError
from tune_jobs.experiment import Experiment
from tune_jobs.results.table import searched_config
from tune_jobs.space import Dimension, trainer_params
from tune_jobs.spec import Budget, JobSpec, SchedulerConfig, SearchConfig

CONFIRM_NAME = "confirm"
# Trial keys that say how a config is replicated, not what it is: never part of a candidate.
FOLD_KEYS = ("fold", "num_folds")
REPLICATION_KEYS = ("seed", *FOLD_KEYS)


class ConfirmOptions(StrictModel):
    """``textune confirm``'s options: how many of the best configs, seeds per config, validation folds."""

    top_k: int
    seeds: int
    folds: int | None = None

    @pydantic.field_validator("top_k", "seeds")
    @classmethod
    def _at_least_one(cls, value: int, info: pydantic.ValidationInfo) -> int:
        if value < 1:
            option = "--top-k" if info.field_name == "top_k" else "--seeds"
            raise ValueError(f"{option} must be 1 or more, got {value}")
        return value

    @pydantic.field_validator("folds")
    @classmethod
    def _two_or_more(cls, value: int | None) -> int | None:
        if value is not None and value < 2:
            raise ValueError(
                f"--folds {value} leaves no chunk to train on; give 2 or more folds, or leave --folds "
                "out to validate on the prepared val split"
            )
        return value


@dataclass(frozen=True)
class Candidate:
    """A config to confirm: its rank in the search (1 = best), the trial that found it, its searched values."""

    rank: int
    trial_id: str
    config: dict[str, Any]


def top_candidates(trials: pd.DataFrame, k: int, where: str) -> list[Candidate]:
    """The ``k`` best distinct configs of a best-first trial table, ignoring trials without a finite metric."""
    distinct: dict[str, Candidate] = {}
    scored = trials[trials["best_metric"].map(math.isfinite)] if not trials.empty else trials
    for _, row in scored.iterrows():
        config = {key: value for key, value in searched_config(row).items() if key not in REPLICATION_KEYS}
        # The same config found twice counts once, at its better rank (control knobs never reach the trainer).
        key = repr(sorted(trainer_params(config).items()))
        distinct.setdefault(key, Candidate(len(distinct) + 1, str(row["trial_id"]), config))
    if k > len(distinct):
        raise TextuneError(
            f"--top-k {k} asks for more configs than {where} has: {len(trials)} trials, {len(distinct)} distinct "
            "configs with a finite metric.",
            f"Give --top-k {len(distinct)} or less." if distinct else "Resume or rerun the search first.",
        )
    return list(distinct.values())[:k]


def confirmation_seeds(spec: JobSpec, count: int) -> list[int]:
    """``count`` seeds the search never trained with."""
    return [spec.seed + offset for offset in range(1, count + 1)]


def confirmation_spec(
    spec: JobSpec, experiment: Experiment, candidates: list[Candidate], options: ConfirmOptions
) -> JobSpec:
    """The job spec of the confirmation run of ``candidates``, stored under ``experiment``/confirm."""
    fold_keys = sorted(set(FOLD_KEYS) & (set(spec.model) | set(spec.space)))
    if options.folds is not None and fold_keys:
        raise TextuneError(
            f"the search of {experiment.root} already sets {', '.join(fold_keys)}, so --folds "
            "cannot choose the validation folds.",
            "Leave --folds out.",
        )
    # Points fix every searched key, so a grid dimension of the search is one choice among its values here.
    space = {
        name: Dimension(choice=dimension.values) if dimension.kind == "grid" else dimension
        for name, dimension in spec.space.items()
        if name != "seed"
    }
    space["seed"] = Dimension(grid=confirmation_seeds(spec, options.seeds))
    model = dict(spec.model)
    if options.folds is not None:
        space["fold"] = Dimension(grid=list(range(options.folds)))
        model["num_folds"] = options.folds
    data = {
        **spec.model_dump(
            mode="json", exclude={"name", "storage", "budget", "search", "scheduler", "space", "model", "num_samples"}
        ),
        "name": CONFIRM_NAME,
        "storage": experiment.root,
        "model": model,
        "space": {name: dimension.model_dump(exclude_none=True) for name, dimension in space.items()},
        "budget": Budget(max_tokens=spec.budget.max_tokens, eval_every_tokens=spec.budget.eval_every_tokens),
        "search": SearchConfig(algorithm="random", points_to_evaluate=[c.config for c in candidates]),
        "scheduler": SchedulerConfig(kind="fifo"),
        "num_samples": len(candidates),
    }
    return validate(JobSpec, data, f"confirmation of {experiment.root}")


def same_plan(saved: JobSpec, planned: JobSpec) -> bool:
    """Whether a stored confirmation run is the one planned (where the experiment lives does not count)."""
    return saved.model_dump(exclude={"storage"}) == planned.model_dump(exclude={"storage"})


def describe_plan(spec: JobSpec) -> str:
    """``top-k K, seeds S, folds F`` of a confirmation spec (for messages about a stored run)."""
    folds = spec.space.get("fold")
    return f"top-k {spec.num_samples}, seeds {len(spec.space['seed'].values)}" + (
        f", folds {len(folds.values)}" if folds else ", no folds"
    )
