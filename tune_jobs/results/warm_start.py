"""Warm start: the configs of a previous experiment's best trials, proposed first to a new search."""

from __future__ import annotations

import math
from typing import Any

from tune_jobs.experiment import open_experiment
from tune_jobs.results.parquet import read_trials
from tune_jobs.results.table import searched_config


def top_configs(experiment_dir: str, k: int, names: list[str]) -> list[dict[str, Any]]:
    """The configs of the ``k`` best trials of a previous experiment, restricted to ``names`` (warm start)."""
    trials = read_trials(open_experiment(experiment_dir))
    scored = trials[trials["best_metric"].map(math.isfinite)].head(k)
    configs = [{n: v for n, v in searched_config(row).items() if n in names} for _, row in scored.iterrows()]
    return [config for config in configs if set(config) == set(names)]
