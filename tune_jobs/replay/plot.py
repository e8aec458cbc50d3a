"""Anytime regret of each strategy against tokens and against simulated device-hours, as one PNG."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tune_jobs.replay.compare import StrategyRuns, anytime

GRID_POINTS = 200


def plot_regret(runs: list[StrategyRuns], target: float, mode: str, metric: str, title: str, path: Path) -> Path:
    """Two panels (tokens, device-hours), a line per strategy: the IQM over seeds of best-so-far regret."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for axis, column, label, scale in ((axes[0], "tokens", "training tokens (all trials)", 1.0),
                                       (axes[1], "device_s", "device-hours (simulated)", 1 / 3600)):
        ends = [s.progress[column].iloc[-1] for r in runs for s in r.searches if not s.progress.empty]
        starts = [s.progress[column].iloc[0] for r in runs for s in r.searches if not s.progress.empty]
        if not ends:
            continue
        grid = np.geomspace(max(min(starts), 1e-9), max(ends), GRID_POINTS)
        for strategy_runs in runs:
            regret = anytime(strategy_runs.searches, target, mode, column, grid)
            axis.plot(grid * scale, regret, label=strategy_runs.strategy.label)
        axis.set_xscale("log")
        axis.set_xlabel(label)
        axis.set_ylabel(f"regret of best {metric} so far (IQM over seeds)")
        axis.grid(True, alpha=0.3)
    axes[0].legend(fontsize=7)
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
