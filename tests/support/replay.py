"""Hand-built learning-curve tables for the replay and search-contract tests (no Ray, no training)."""

from __future__ import annotations

import itertools
import math
from typing import Any

import pandas as pd

from tune_jobs.replay.table import config_id, make_table
from tune_jobs.results.table import CONFIG_PREFIX
from tune_jobs.spec import JobSpec

EVAL_EVERY = 1024


def hand_spec(space: dict[str, Any], max_tokens: int, **settings: Any) -> JobSpec:
    return JobSpec.model_validate(
        {
            "name": "hand",
            "data": {"source": "synthetic"},
            "space": space,
            "budget": {"max_tokens": max_tokens, "eval_every_tokens": EVAL_EVERY},
            "search": {"algorithm": "grid"},
            "scheduler": {"kind": "fifo"},
            **settings,
        }
    )


def hand_table(
    space: dict[str, Any], curves: list[tuple[dict[str, Any], int, list[float], list[float]]], **settings: Any
):
    """A table of (config, seed, metric per evaluation, wall seconds per evaluation) curves, evaluated every
    EVAL_EVERY tokens; FLOPs are 1e9 per interval."""
    rows = []
    for number, (config, seed, metrics, walls) in enumerate(curves):
        for step, (metric, wall) in enumerate(zip(metrics, walls, strict=True), start=1):
            rows.append(
                {
                    "config_id": config_id(config),
                    "seed": seed,
                    "source_trial": f"t{number}",
                    **{CONFIG_PREFIX + k: v for k, v in config.items()},
                    "tokens": step * EVAL_EVERY,
                    "val_bpc": metric,
                    "train_loss": metric,
                    "wall_s": wall,
                    "flops": 1e9,
                }
            )
    max_tokens = max(len(c[2]) for c in curves) * EVAL_EVERY
    return make_table(pd.DataFrame(rows), hand_spec(space, max_tokens, **settings), {"source": "hand-built"})


def smooth_metric(lr: float, width: int, tokens: int) -> float:
    """A smooth learning curve: best near lr = 3e-3, wider is better, falling with tokens."""
    return 1.0 + 0.5 * (math.log10(lr) + 2.5) ** 2 + (0.2 if width == 32 else 0.0) + 2.0 / math.sqrt(tokens / 1024)


def smooth_table(lrs: list[float], widths: list[int], evaluations: int = 8):
    curves = [
        (
            {"lr": lr, "width": width},
            0,
            [smooth_metric(lr, width, k * EVAL_EVERY) for k in range(1, evaluations + 1)],
            [1.0] * evaluations,
        )
        for lr, width in itertools.product(lrs, widths)
    ]
    return hand_table({"lr": {"grid": lrs}, "width": {"grid": widths}}, curves)
