"""The summary of a confirmation run: each config's metric over seeds x folds, and a paired test of the lead.

Each run contributes its metric at the last evaluation, i.e. at the full budget (not its best evaluation:
picking the best of several evaluations on the same validation text would flatter every config). A config's
``values`` follow one fixed order, seed-major then fold, so the i-th values of two configs come from the same
seed and validation text. That pairing removes what seed and fold do to every config alike, so the lead of the
best config over the runner-up is judged with a paired t-test (``scipy.stats.ttest_rel``, two-sided) on the
per-pair differences.

A run that diverged has no finite value: it is written as ``null``, its config's mean and std are ``null``
and the config takes no part in the test.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np
import pandas as pd

from tune_jobs.analysis.confirm_plan import Candidate
from tune_jobs.results.table import CONFIG_PREFIX
from tune_jobs.spec import JobSpec

ALPHA = 0.05
TEST_NAME = "paired t-test (scipy.stats.ttest_rel, two-sided)"


def replication_order(plan: JobSpec) -> list[tuple[int, int | None]]:
    """The (seed, fold) of each value of a config, in the order ``values`` lists them (fold None: no folds)."""
    folds = plan.space["fold"].values if "fold" in plan.space else [None]
    return [(seed, fold) for seed in plan.space["seed"].values for fold in folds]


def summarize(trials: pd.DataFrame, candidates: list[Candidate], plan: JobSpec) -> dict[str, Any]:
    """The confirm.json document of a finished confirmation run (``trials``: its results table)."""
    order = replication_order(plan)
    configs = []
    for candidate in candidates:
        values = [_run_value(trials, candidate, seed, fold, plan.metric) for seed, fold in order]
        finite = all(math.isfinite(v) for v in values)
        configs.append(
            {
                "rank": candidate.rank,
                "trial_id": candidate.trial_id,
                "config": candidate.config,
                "values": [v if math.isfinite(v) else None for v in values],
                "mean": float(np.mean(values)) if finite else None,
                # the spread between runs of one config (sample std; 0 for a single run)
                "std": float(np.std(values, ddof=1)) if finite and len(values) > 1 else (0.0 if finite else None),
            }
        )
    folds = plan.space.get("fold")
    return {
        "metric": plan.metric,
        "mode": plan.mode,
        "seeds": len(plan.space["seed"].values),
        "folds": len(folds.values) if folds else None,
        "max_tokens": plan.budget.max_tokens,
        "replications": [{"seed": seed, "fold": fold} for seed, fold in order],
        "configs": configs,
        **paired_test(configs, plan.mode),
    }


def paired_test(configs: list[dict[str, Any]], mode: str) -> dict[str, Any]:
    """``{"paired_test": {...} | None, "no_test_reason": str | None}`` for the best config against the runner-up."""
    from scipy import stats

    ranked = sorted((c for c in configs if c["mean"] is not None), key=lambda c: c["mean"], reverse=mode == "max")
    if len(ranked) < 2:
        return {"paired_test": None, "no_test_reason": "fewer than two configs have a finite metric in every run"}
    best, runner_up = ranked[0], ranked[1]
    differences = np.array(best["values"]) - np.array(runner_up["values"])  # (n,) one per (seed, fold)
    if len(differences) < 2:
        return {
            "paired_test": None,
            "no_test_reason": "one (seed, fold) pair only: no test is possible with "
            "n < 2; give --seeds 2 or more, or --folds",
        }
    if np.all(differences == differences[0]):
        # No spread: t is undefined. Identical runs show no lead; a constant lead is as clear as it gets.
        p_value = 1.0 if differences[0] == 0 else 0.0
    else:
        p_value = float(stats.ttest_rel(best["values"], runner_up["values"]).pvalue)
    return {
        "paired_test": {
            "best": best["trial_id"],
            "runner_up": runner_up["trial_id"],
            "test": TEST_NAME,
            "n": len(differences),
            "mean_diff": float(differences.mean()),
            "p_value": p_value,
            "alpha": ALPHA,
            "significant": p_value < ALPHA,
        },
        "no_test_reason": None,
    }


def format_summary(summary: dict[str, Any]) -> str:
    """The summary as a table and a verdict, for the terminal."""
    metric = summary["metric"]
    runs = f"{summary['seeds']} seed(s)" + (f" x {summary['folds']} folds" if summary["folds"] else "")
    lines = [
        f"{metric} at {summary['max_tokens']:,} tokens (last evaluation), {runs} per config:",
        f"{'rank':>4}  {'trial':<14} {'mean':>9} {'std':>8} {'runs':>5}  config",
    ]
    for config in summary["configs"]:
        finite = [v for v in config["values"] if v is not None]
        mean = f"{config['mean']:.4f}" if config["mean"] is not None else "diverged"
        std = f"{config['std']:.4f}" if config["std"] is not None else f"{len(config['values']) - len(finite)} div"
        shown = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in config["config"].items())
        lines.append(f"{config['rank']:>4}  {config['trial_id']:<14} {mean:>9} {std:>8} {len(finite):>5}  {shown}")
    test = summary["paired_test"]
    if test is None:
        lines.append(f"no paired test: {summary['no_test_reason']}.")
    else:
        verdict = (
            "the lead exceeds the noise"
            if test["significant"]
            else "the lead is within the noise: the runner-up may be as good"
        )
        lines.append(
            f"best {test['best']} vs runner-up {test['runner_up']}: mean difference {test['mean_diff']:+.4f} "
            f"over n={test['n']} (seed, fold) pairs, {test['test']}: p = {test['p_value']:.3g} "
            f"({'<' if test['significant'] else '>='} {test['alpha']}): {verdict}."
        )
    return "\n".join(lines)


def _run_value(trials: pd.DataFrame, candidate: Candidate, seed: int, fold: int | None, metric: str) -> float:
    """The last ``metric`` of the run of ``candidate`` with ``seed`` (and ``fold``); inf if it diverged."""
    match = trials[f"{CONFIG_PREFIX}seed"] == seed
    if fold is not None:
        match &= trials[f"{CONFIG_PREFIX}fold"] == fold
    for key, value in candidate.config.items():
        column = trials[CONFIG_PREFIX + key]
        match &= column.map(functools.partial(_same, wanted=value))
    rows = trials[match]
    if len(rows) != 1:
        raise RuntimeError(
            f"confirmation run of trial {candidate.trial_id} (seed {seed}, fold {fold}): "
            f"{len(rows)} result rows, expected 1"
        )
    value = float(rows.iloc[0][f"last_{metric}"])
    return value if math.isfinite(value) else math.inf


def _same(given: Any, wanted: Any) -> bool:
    # Floats travel through Ray's trial state and Parquet; compare them to rounding.
    if isinstance(wanted, float) and isinstance(given, (float, np.floating)):
        return math.isclose(given, wanted, rel_tol=1e-12, abs_tol=0.0)
    return bool(given == wanted)
