"""Search algorithms and schedulers built from a job spec.

``hyperopt`` is TPE (seeded, ``n_initial_points`` random proposals first), ``bohb`` is TPE per ASHA rung
(tune_jobs.bohb), ``random`` and ``grid`` are Ray's seeded BasicVariantGenerator. ``asha`` stops trials at
rungs counted in training tokens; ``fifo`` never stops them early.
"""

from __future__ import annotations

import math
from typing import Any

from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, TrialScheduler
from ray.tune.search import BasicVariantGenerator, ConcurrencyLimiter, SearchAlgorithm, Searcher
from ray.tune.search.hyperopt import HyperOptSearch

from tune_jobs.spec import JobSpec

TIME_ATTR = "tokens"

# What HyperOpt is told about a trial whose metric is not finite (a diverged or out-of-memory trial reports
# val_bpc = inf): a loss far worse than any real one, so TPE learns the region is bad. TPE only ranks losses,
# so the exact value does not matter; the reported metric and the status column stay unchanged.
NON_FINITE_PENALTY = 1.0e6


def finite_metric(value: float, mode: str) -> float:
    """``value`` where it is finite, else the worst value for ``mode``: ``+NON_FINITE_PENALTY`` when minimising,
    ``-NON_FINITE_PENALTY`` when maximising. What a TPE searcher (``hyperopt``, ``bohb``) learns of a metric."""
    if math.isfinite(value):
        return value
    return -NON_FINITE_PENALTY if mode == "max" else NON_FINITE_PENALTY


class FiniteHyperOptSearch(HyperOptSearch):
    """HyperOptSearch that turns a non-finite metric into a large finite loss instead of feeding TPE inf/nan.

    The rewrite happens in the public ``Searcher`` callback that hands TPE its loss: ``on_trial_complete``.
    (``on_trial_result`` only stamps HyperOpt's clock and never reads the metric.) The penalty is the worst
    value for the search's mode (:func:`finite_metric`). The caller's dict is left as it is; Ray Tune records
    the trial's real result elsewhere.
    """

    def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False) -> None:
        value = None if result is None else result.get(self.metric)
        if result is not None and isinstance(value, (int, float)) and not math.isfinite(value):
            result = {**result, self.metric: finite_metric(value, self.mode)}
        super().on_trial_complete(trial_id, result=result, error=error)


def build_search_alg(
    spec: JobSpec, points_to_evaluate: list[dict[str, Any]], max_concurrent: int
) -> Searcher | SearchAlgorithm:
    """The spec's search algorithm, seeded and proposing for at most ``max_concurrent`` running trials.

    HyperOpt and rung-aware TPE (``bohb``) learn from results, so they are limited to the slots that run at
    once: every further pending proposal would be made without the results in flight.
    """
    if spec.search.algorithm == "hyperopt":
        searcher: Searcher = FiniteHyperOptSearch(
            metric=spec.metric,
            mode=spec.mode,
            points_to_evaluate=points_to_evaluate or None,
            n_initial_points=spec.search.n_initial_points,
            random_state_seed=spec.seed,
        )
        return ConcurrencyLimiter(searcher, max_concurrent=max_concurrent)
    if spec.search.algorithm == "bohb":
        # Imported here: tune_jobs.bohb builds on this module's finite_metric.
        from tune_jobs.bohb import RungTPESearch

        # A trial is observed at every rung and at the full budget (one level, where the top rung is it).
        levels = list(dict.fromkeys([*rung_milestones(spec), float(spec.budget.max_tokens)]))
        searcher = RungTPESearch(
            levels,
            metric=spec.metric,
            mode=spec.mode,
            time_attr=TIME_ATTR,
            points_to_evaluate=points_to_evaluate,
            random_state_seed=spec.seed,
        )
        return ConcurrencyLimiter(searcher, max_concurrent=max_concurrent)
    return BasicVariantGenerator(
        points_to_evaluate=points_to_evaluate or None, max_concurrent=max_concurrent, random_state=spec.seed
    )


def build_scheduler(spec: JobSpec) -> TrialScheduler:
    """ASHA on training tokens, or FIFO."""
    if spec.scheduler.kind == "fifo":
        return FIFOScheduler()
    return ASHAScheduler(
        time_attr=TIME_ATTR,
        metric=spec.metric,
        mode=spec.mode,
        max_t=spec.budget.max_tokens,
        grace_period=spec.grace_period_tokens,
        reduction_factor=spec.scheduler.reduction_factor,
    )


def rung_milestones(spec: JobSpec) -> list[float]:
    """ASHA's rungs in training tokens, lowest first, as Ray's single bracket places them (empty for FIFO).

    A trial that reaches a rung continues only if its metric is in the top 1/reduction_factor of the trials
    recorded at that rung so far. The spec allows at most ``tune_jobs.spec.MAX_RUNGS`` of them.
    """
    return spec.rung_milestones
