"""The search strategies a replay compares, each as a variant of the recorded job spec.

A strategy is a search algorithm and a scheduler written ``ALGORITHM+SCHEDULER`` (``hyperopt+asha``,
``random+fifo``, ...), with ASHA's grace period and reduction factor. Its spec is the recorded spec with those
keys replaced, the search space adapted to the table (``grid``: every recorded value of every hyperparameter;
``random``, ``hyperopt`` and ``bohb``: the recorded space, a grid dimension becoming a choice of its values), and the
seed of the replay; a warm start is dropped (a replay reads no other experiment).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import get_args

from textune.config import did_you_mean, validate
from textune.errors import TextuneError
from tune_jobs.replay.table import SEED_KEY, CurveTable
from tune_jobs.results.table import CONFIG_PREFIX, plain_value
from tune_jobs.space import Dimension, grid_size
from tune_jobs.spec import RUNG_ALGORITHMS, JobSpec, SchedulerConfig, SearchConfig

ALGORITHMS: tuple[str, ...] = get_args(SearchConfig.model_fields["algorithm"].annotation)
SCHEDULERS: tuple[str, ...] = get_args(SchedulerConfig.model_fields["kind"].annotation)
# Every pair the spec allows: bohb models ASHA's rungs, so it has no FIFO strategy.
STRATEGIES = tuple(f"{a}+{s}" for a in ALGORITHMS for s in SCHEDULERS if not (a in RUNG_ALGORITHMS and s != "asha"))
# The benchmark's default set (docs/replay.md); textune's default is hyperopt+asha.
# The spec keys a replayed strategy takes from the command line, and the options that set them.
STRATEGY_FLAGS = {
    "search.algorithm": "--strategy",
    "scheduler.kind": "--strategy",
    "scheduler.grace_period_tokens": "--grace-period-tokens",
    "scheduler.reduction_factor": "--reduction-factor",
}
DEFAULT_STRATEGIES = ("random+fifo", "grid+fifo", "random+asha", "hyperopt+fifo", "hyperopt+asha")


@dataclass(frozen=True)
class Strategy:
    """One way to search; ``grace_period_tokens`` and ``reduction_factor`` only matter for ASHA."""

    algorithm: str
    scheduler: str
    grace_period_tokens: int | None = None
    reduction_factor: float = 3.0

    @property
    def label(self) -> str:
        name = f"{self.algorithm}+{self.scheduler}"
        if self.scheduler == "asha":
            name += f" (grace {self.grace_period_tokens}, rf {self.reduction_factor:g})"
        return name

    @property
    def slug(self) -> str:
        """The label as one plain directory name."""
        name = f"{self.algorithm}-{self.scheduler}"
        return name + (f"-g{self.grace_period_tokens}-rf{self.reduction_factor:g}" if self.scheduler == "asha" else "")


def parse_strategies(names: list[str], spec: JobSpec, grace_periods: list[int], factors: list[float]) -> list[Strategy]:
    """Strategies from ``ALGORITHM+SCHEDULER`` names; each ASHA strategy once per grace period and factor given
    (default: the recorded spec's own values)."""
    strategies = []
    for name in names:
        if name not in STRATEGIES:
            raise _unknown_strategy(name)
        algorithm, scheduler = name.split("+")
        if scheduler == "fifo":
            strategies.append(Strategy(algorithm, scheduler))
            continue
        for grace in grace_periods or [spec.grace_period_tokens]:
            for factor in factors or [spec.scheduler.reduction_factor]:
                strategies.append(Strategy(algorithm, scheduler, grace, factor))
    return list(dict.fromkeys(strategies))


def _unknown_strategy(name: str) -> TextuneError:
    """The refusal of a --strategy that is not in STRATEGIES; a known algorithm with a scheduler it cannot run
    with (bohb+fifo) is told which scheduler it needs rather than a look-alike name."""
    algorithm, _, scheduler = name.partition("+")
    if algorithm in RUNG_ALGORITHMS and scheduler in SCHEDULERS:
        return TextuneError(
            f'--strategy "{name}": {algorithm} models ASHA\'s rungs, so it runs only with the asha scheduler. '
            f"Strategies: {', '.join(STRATEGIES)}.",
            f"Use --strategy {algorithm}+asha.",
        )
    return TextuneError(
        f'--strategy "{name}" is not a strategy.{did_you_mean(name, STRATEGIES)} Strategies: {", ".join(STRATEGIES)}.',
        "Give one of them per --strategy.",
    )


def strategy_spec(table: CurveTable, strategy: Strategy, seed: int, trials: int) -> JobSpec:
    """The job spec that runs ``strategy`` over the table's space with ``trials`` trials (a grid runs once)."""
    spec = table.spec
    # A replay's seed picks among a configuration's recorded seeds, so a searched seed is not searched again.
    space = {
        name: _dimension(table, name, dimension, strategy.algorithm)
        for name, dimension in spec.space.items()
        if name != SEED_KEY
    }
    recorded = spec.model_dump(mode="json", exclude_none=True)
    scheduler = {"kind": strategy.scheduler, "reduction_factor": strategy.reduction_factor}
    if strategy.grace_period_tokens is not None:
        scheduler["grace_period_tokens"] = strategy.grace_period_tokens
    recorded.pop("max_concurrent_trials", None)  # the replay's workers limit the trials at once
    data = {
        **recorded,
        "space": {name: d.model_dump(exclude_none=True) for name, d in space.items()},
        "search": {**recorded["search"], "algorithm": strategy.algorithm, "warm_start_from": None},
        "scheduler": scheduler,
        "seed": seed,
        # A grid runs once after the points to evaluate, each of which counts as a sample.
        "num_samples": 1 + len(spec.search.points_to_evaluate) if strategy.algorithm == "grid" else trials,
    }
    grace = strategy.grace_period_tokens
    if grace is not None and grace > spec.budget.max_tokens:
        # The spec's own check advises leaving the key out to follow budget.max_tokens; a replay's budget is
        # the recording's, so the advice here is about the option.
        raise TextuneError(
            f"replayed strategy {strategy.label}: --grace-period-tokens {grace} exceeds the recorded "
            f"budget.max_tokens ({spec.budget.max_tokens}); no trial could reach the first rung.",
            f"Give at most {spec.budget.max_tokens}, or leave the option out (the recorded spec's grace period "
            "is used).",
        )
    # The spec's other checks (a factor above 1, at most MAX_RUNGS rungs) hold for a replayed strategy too, and
    # name the option that set the value in one paragraph.
    return validate(JobSpec, data, f"replayed strategy {strategy.label}", flags=STRATEGY_FLAGS)


def _dimension(table: CurveTable, name: str, dimension: Dimension, algorithm: str) -> Dimension:
    if algorithm == "grid":
        column = CONFIG_PREFIX + name
        values = sorted({plain_value(v) for v in table.curves[column].dropna()}) if column in table.curves else []
        return Dimension(grid=values or dimension.values)
    if dimension.kind == "grid":
        return Dimension(choice=dimension.values)
    return dimension


def grid_points(table: CurveTable) -> int:
    """How many configurations a grid over the table's recorded values crosses to."""
    return grid_size(strategy_spec(table, Strategy("grid", "fifo"), 0, 1).space)
