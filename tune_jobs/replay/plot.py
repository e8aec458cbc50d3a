"""Anytime regret of each strategy against tokens and against simulated device-hours, as one PNG."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tune_jobs.replay.compare import StrategyRuns, anytime

GRID_POINTS = 200
# Regret is linear up to this (in the metric's unit) and logarithmic above: the last few hundredths, where
# strategies differ, stay visible beside the early whole units, and a regret of 0 still has a place.
LINEAR_REGRET = 1e-3


def plot_regret(runs: list[StrategyRuns], target: float, mode: str, metric: str, title: str, path: Path) -> Path:
    """Two panels (tokens, device-hours, both on a log scale), a line per strategy: the IQM over seeds of
    best-so-far regret, linear below LINEAR_REGRET and logarithmic above."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    figure, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for axis, column, label, scale in (
        (axes[0], "tokens", "training tokens (all trials)", 1.0),
        (axes[1], "device_s", "device-hours (simulated)", 1 / 3600),
    ):
        ends = [s.progress[column].iloc[-1] for r in runs for s in r.searches if not s.progress.empty]
        starts = [s.progress[column].iloc[0] for r in runs for s in r.searches if not s.progress.empty]
        if not ends:
            continue
        grid = np.geomspace(max(min(starts), 1e-9), max(ends), GRID_POINTS)
        lowest = 0.0  # below 0 only where a fill extrapolated past the target
        for strategy_runs in runs:
            regret = anytime(strategy_runs.searches, target, mode, column, grid)
            axis.plot(grid * scale, regret, label=strategy_runs.strategy.label)
            lowest = min(lowest, float(np.nanmin(regret, initial=0.0)))
        axis.set_xscale("log")
        if grid[-1] / grid[0] < 100:
            # Within two decades: ticks at 1, 2 and 5 per decade, plainly written, so a range inside one decade
            # still gets labels (matplotlib's own minor labels of such a range overlap).
            axis.xaxis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
            axis.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda value, _: f"{value:g}"))
        axis.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        axis.set_yscale("symlog", linthresh=LINEAR_REGRET)
        axis.set_ylim(bottom=lowest)
        axis.set_xlabel(label)
        axis.set_ylabel(f"regret of best {metric} so far (IQM over seeds)")
        axis.grid(True, alpha=0.3)
    axes[0].legend(fontsize=7)
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=90)
    plt.close(figure)
    return path
