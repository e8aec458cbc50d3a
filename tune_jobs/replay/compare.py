"""Strategies compared on one table: many paired seeds each, summarised with the IQM and bootstrap 95% CIs.

Seed ``k`` of every strategy is the same ``k`` (its searcher's seed and the recorded seed it reads), so the
strategies are paired. For each simulated search the comparison records the best metric found, its regret
(best found minus the target, in the metric's unit, positive when worse), the tokens and device-hours it had
spent when its best first came within 0%, 1% and 2% of the target, its total cost and its extrapolated share.
A seed that never came within a tolerance has no cost for it: the summary gives the share of seeds that
did, and the IQM and CI of the cost over those seeds.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from tune_jobs.replay.lookup import CurveLookup
from tune_jobs.replay.simulator import Overhead, SimulatedSearch, simulate
from tune_jobs.replay.strategies import Strategy, strategy_spec
from tune_jobs.replay.table import CurveTable

TOLERANCES = (0.0, 0.01, 0.02)
BOOTSTRAP_RESAMPLES = 2000


def iqm(values: Any) -> float:
    """The interquartile mean: the mean of the middle 50% (Agarwal et al. 2021)."""
    from scipy.stats import trim_mean

    return float(trim_mean(np.asarray(values, dtype=float), 0.25, axis=None))


def iqm_ci(values: list[float]) -> dict[str, Any]:
    """IQM with a percentile-bootstrap 95% CI (scipy.stats.bootstrap, seeded); no CI from fewer than 2 values."""
    from scipy.stats import bootstrap, trim_mean

    data = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=float)
    if len(data) == 0:
        return {"iqm": None, "low": None, "high": None, "n": 0}
    if len(data) < 2 or np.ptp(data) == 0:
        return {"iqm": iqm(data), "low": float(data.min()), "high": float(data.max()), "n": len(data)}
    ci = bootstrap(
        (data,),
        lambda x, axis: trim_mean(x, 0.25, axis=axis),
        n_resamples=BOOTSTRAP_RESAMPLES,
        confidence_level=0.95,
        method="percentile",
        random_state=0,
    ).confidence_interval
    return {"iqm": iqm(data), "low": float(ci.low), "high": float(ci.high), "n": len(data)}


def format_ci(stat: dict[str, Any], spec: str) -> str:
    """``IQM [low, high]`` of an :func:`iqm_ci` result in the format ``spec``; ``never`` without values."""
    if stat["iqm"] is None:
        return "never"
    return f"{format(stat['iqm'], spec)} [{format(stat['low'], spec)}, {format(stat['high'], spec)}]"


def within(value: float, target: float, tolerance: float, mode: str) -> bool:
    """Whether ``value`` is within ``tolerance`` (relative to |target|) of ``target`` or better."""
    slack = abs(target) * tolerance + 1e-12
    return value <= target + slack if mode == "min" else value >= target - slack


def search_record(search: SimulatedSearch, target: float, mode: str) -> dict[str, Any]:
    """One simulated search as plain numbers (see the module docstring)."""
    progress = search.progress
    best = float(progress["best"].iloc[-1]) if not progress.empty else math.nan
    record: dict[str, Any] = {
        "best": best,
        "regret": (best - target) if mode == "min" else (target - best),
        "tokens": int(progress["tokens"].iloc[-1]) if not progress.empty else 0,
        "device_hours": float(progress["device_s"].iloc[-1]) / 3600 if not progress.empty else 0.0,
        "makespan_hours": search.makespan_s / 3600,
        "trials": len(search.trials),
        "extrapolated_share": search.extrapolated_share,
        "real_seconds": search.real_seconds,
    }
    for tolerance in TOLERANCES:
        reached = progress[[within(v, target, tolerance, mode) for v in progress["best"]]]
        first = reached.iloc[0] if not reached.empty else None
        record[f"tokens_to_{tolerance:g}"] = int(first["tokens"]) if first is not None else None
        record[f"device_hours_to_{tolerance:g}"] = float(first["device_s"]) / 3600 if first is not None else None
    return record


@dataclass
class StrategyRuns:
    """Every seed of one strategy: ``records`` (one per seed) and the simulated searches themselves."""

    strategy: Strategy
    records: list[dict[str, Any]]
    searches: list[SimulatedSearch]


def run_strategy(
    table: CurveTable,
    lookup: CurveLookup,
    strategy: Strategy,
    seeds: int,
    workers: int,
    trials: int,
    target: float,
    overhead: Overhead = Overhead(),
    throughput_flops_per_s: float | None = None,
) -> StrategyRuns:
    """``seeds`` paired replays of ``strategy`` on ``workers`` simulated workers; evaluations take their recorded
    wall seconds, or their FLOPs over ``throughput_flops_per_s`` when it is given."""
    searches = [
        simulate(
            strategy_spec(table, strategy, seed, trials),
            lookup,
            workers,
            seed,
            overhead,
            throughput_flops_per_s,
            max_trials=trials,
        )
        for seed in range(seeds)
    ]
    return StrategyRuns(strategy, [search_record(s, target, table.mode) for s in searches], searches)


def summarise(runs: StrategyRuns) -> dict[str, Any]:
    """IQM and CI of regret and of the cost to reach each tolerance, the share of seeds that reached it."""
    records = runs.records
    summary: dict[str, Any] = {
        "strategy": runs.strategy.label,
        "slug": runs.strategy.slug,
        "seeds": len(records),
        "regret": iqm_ci([r["regret"] for r in records]),
        "tokens": iqm_ci([r["tokens"] for r in records]),
        "device_hours": iqm_ci([r["device_hours"] for r in records]),
        "extrapolated_share": float(np.mean([r["extrapolated_share"] for r in records])),
        "simulated_trials": sum(r["trials"] for r in records),
        "simulated_trials_per_second": sum(r["trials"] for r in records)
        / max(sum(r["real_seconds"] for r in records), 1e-9),
    }
    for tolerance in TOLERANCES:
        tokens = [r[f"tokens_to_{tolerance:g}"] for r in records]
        summary[f"within_{tolerance:g}"] = {
            "reached_share": sum(t is not None for t in tokens) / len(records),
            "tokens": iqm_ci([t for t in tokens if t is not None]),
            "device_hours": iqm_ci(
                [
                    r[f"device_hours_to_{tolerance:g}"]
                    for r in records
                    if r[f"device_hours_to_{tolerance:g}"] is not None
                ]
            ),
        }
    return summary


def anytime(searches: list[SimulatedSearch], target: float, mode: str, axis: str, grid: np.ndarray) -> np.ndarray:
    """Regret of the best so far at each ``grid`` value of ``axis`` (``tokens`` or ``device_s``), IQM over seeds;
    NaN before a search's first result."""
    curves = []
    for search in searches:
        progress = search.progress
        positions = np.searchsorted(progress[axis].to_numpy(), grid, side="right") - 1
        best = progress["best"].to_numpy()
        regret = (best - target) if mode == "min" else (target - best)
        curves.append(np.where(positions >= 0, regret[np.clip(positions, 0, None)], np.nan))
    stacked = np.array(curves)
    return np.array([iqm(column[~np.isnan(column)]) if (~np.isnan(column)).any() else np.nan for column in stacked.T])


def compare(
    table: CurveTable,
    lookup: CurveLookup,
    strategies: list[Strategy],
    seeds: int,
    workers: int,
    trials: int,
    target: float | None = None,
    overhead: Overhead = Overhead(),
    throughput_flops_per_s: float | None = None,
) -> tuple[list[StrategyRuns], dict[str, Any]]:
    """Every strategy × ``seeds`` on ``workers`` workers; returns the runs and the summary document."""
    target = table.best_value() if target is None else target
    started = time.perf_counter()
    runs = [
        run_strategy(table, lookup, strategy, seeds, workers, trials, target, overhead, throughput_flops_per_s)
        for strategy in strategies
    ]
    return runs, comparison_document(
        table,
        lookup.fill,
        runs,
        workers,
        trials,
        target,
        overhead,
        time.perf_counter() - started,
        throughput_flops_per_s,
    )


def comparison_document(
    table: CurveTable,
    fill: str,
    runs: list[StrategyRuns],
    workers: int,
    trials: int,
    target: float,
    overhead: Overhead,
    real_seconds: float,
    throughput_flops_per_s: float | None = None,
) -> dict[str, Any]:
    """The summary document of :func:`compare` from runs made by :func:`run_strategy` (here or in other
    processes); ``real_seconds`` is the wall time they took, ``throughput_flops_per_s`` the one they timed
    evaluations with (None: recorded wall seconds)."""
    return {
        "metric": table.metric,
        "mode": table.mode,
        "target": target,
        "workers": workers,
        "seeds": len(runs[0].records) if runs else 0,
        "trials": trials,
        "fill": fill,
        "overhead": {"slot_start_s": overhead.slot_start_s, "trial_start_s": overhead.trial_start_s},
        "throughput_flops_per_s": throughput_flops_per_s,
        "device_kind": table.manifest.get("device_kind"),
        "strategies": [summarise(r) for r in runs],
        "real_seconds": real_seconds,
    }


def records_frame(runs: list[StrategyRuns]) -> pd.DataFrame:
    """A row per (strategy, seed) with every number of :func:`search_record`."""
    return pd.DataFrame(
        [{"strategy": r.strategy.label, "seed": seed, **record} for r in runs for seed, record in enumerate(r.records)]
    )
