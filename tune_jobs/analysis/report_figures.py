"""The report's figures as PNG bytes, drawn on bare matplotlib Figures (no pyplot, no display, no global state).

Each function takes plain tables (the trials and evaluations tables of :mod:`tune_jobs.results`) and spec
values, so the figures can be drawn for any experiment that has them, finished, resumed or copied.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from typing import Any

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter

from models.status import TrialStatus
from tune_jobs.analysis.importance import ImportanceReport
from tune_jobs.results.table import CONFIG_PREFIX
from tune_jobs.space import Dimension

STATUS_COLOURS = {
    TrialStatus.COMPLETED: "tab:green",
    TrialStatus.EARLY_STOPPED: "tab:orange",
    TrialStatus.DIVERGED: "tab:red",
    TrialStatus.OOM: "tab:purple",
    TrialStatus.ERRORED: "black",
    TrialStatus.UNFINISHED: "tab:gray",
}
FLOOR_STYLE: dict[str, Any] = {"color": "tab:blue", "linestyle": "--", "linewidth": 1.2}
DPI = 110


def to_png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight")
    return buffer.getvalue()


def finite(frame: pd.DataFrame, column: str) -> pd.DataFrame:
    """Rows whose ``column`` is a finite number (a diverged trial reports inf)."""
    return frame[frame[column].map(lambda value: isinstance(value, (int, float)) and math.isfinite(value))]


def learning_curves(
    evaluations: pd.DataFrame, trials: pd.DataFrame, rungs: Sequence[float], floor_bpc: float | None
) -> bytes:
    """val_bpc against training tokens for every trial, coloured by status, ASHA's rungs as vertical lines."""
    figure = Figure(figsize=(8, 4.5))
    axes = figure.subplots()
    status_of = dict(zip(trials["trial_id"], trials["status"], strict=True))
    measured = finite(evaluations, "val_bpc")
    for trial_id, curve in measured.groupby("trial_id", sort=False):
        curve = curve.sort_values("tokens")
        axes.plot(
            curve["tokens"],
            curve["val_bpc"],
            marker=".",
            linewidth=1,
            alpha=0.8,
            color=STATUS_COLOURS.get(status_of.get(trial_id, TrialStatus.UNFINISHED), "tab:gray"),
        )
    for rung in rungs:
        axes.axvline(rung, color="0.6", linewidth=0.8, linestyle=":")
    if floor_bpc is not None:
        axes.axhline(floor_bpc, **FLOOR_STYLE, label=f"entropy floor {floor_bpc:.3f}")
    shown = sorted(set(status_of.values()), key=list(STATUS_COLOURS).index)
    for status in shown:
        axes.plot([], [], color=STATUS_COLOURS[status], label=status.replace("_", " "))
    if rungs:
        axes.plot([], [], color="0.6", linestyle=":", label="ASHA rungs")
    axes.set(
        xlabel="training tokens",
        ylabel="val_bpc (bits per character)",
        title=f"Learning curves ({len(measured)} evaluations of {measured['trial_id'].nunique()} trials)",
    )
    axes.legend(fontsize="small")
    axes.grid(alpha=0.3)
    return to_png(figure)


def compute_order(evaluations: pd.DataFrame, devices_per_trial: float) -> pd.DataFrame:
    """Evaluations in the order they happened, with the tokens and device-hours spent by then (all trials).

    Each evaluation adds what its trial spent since its previous one, so concurrent trials add up. After a
    restart from an older checkpoint the tokens trained again are not counted (the difference is clipped at 0).
    """
    ordered = evaluations.sort_values(["timestamp", "time_total_s"], kind="stable").copy()
    by_trial = ordered.groupby("trial_id")
    ordered["spent_tokens"] = by_trial["tokens"].diff().fillna(ordered["tokens"]).clip(lower=0).cumsum()
    spent_seconds = by_trial["time_total_s"].diff().fillna(ordered["time_total_s"]).clip(lower=0)
    ordered["spent_device_hours"] = (spent_seconds * devices_per_trial / 3600.0).cumsum()
    return ordered


def best_so_far(
    evaluations: pd.DataFrame, metric: str, mode: str, devices_per_trial: float, unit: str, floor_bpc: float | None
) -> bytes:
    """The best metric found so far against the compute the whole search had spent: tokens and device-hours."""
    ordered = compute_order(evaluations, devices_per_trial)
    scores = ordered[metric].where(ordered[metric].map(math.isfinite))
    best = scores.cummin() if mode == "min" else scores.cummax()
    figure = Figure(figsize=(10, 3.8))
    axes = figure.subplots(1, 2, sharey=True)
    for axis, column, label in (
        (axes[0], "spent_tokens", "training tokens, all trials"),
        (axes[1], "spent_device_hours", f"{unit}, all trials"),
    ):
        axis.step(ordered[column], best, where="post", color="tab:blue")
        axis.scatter(ordered[column], scores, s=6, color="0.6", label="each evaluation")
        if floor_bpc is not None and metric == "val_bpc":
            axis.axhline(floor_bpc, **FLOOR_STYLE, label="entropy floor")
        axis.set(xlabel=label)
        axis.grid(alpha=0.3)
    axes[0].set(
        ylabel=f"best {metric} so far", title=f"Best so far against compute ({int(scores.notna().sum())} evaluations)"
    )
    axes[0].legend(fontsize="small")
    return to_png(figure)


def axis_position(values: pd.Series, dimension: Dimension) -> tuple[np.ndarray, list[tuple[float, str]]]:
    """Values of one hyperparameter placed on [0, 1] and the tick labels of that axis."""
    if dimension.kind in ("choice", "grid"):
        options = list(dimension.values)
        spread = max(len(options) - 1, 1)
        index = {repr(option): i for i, option in enumerate(options)}
        positions = np.array([index.get(repr(value), 0) / spread for value in values])
        return positions, [(i / spread, str(option)) for i, option in enumerate(options)]
    low, high = float(dimension.values[0]), float(dimension.values[1])
    transform = np.log if dimension.kind == "loguniform" else (lambda x: x)
    span = transform(high) - transform(low)
    positions = (transform(values.astype(float).to_numpy()) - transform(low)) / span
    return positions, [(0.0, f"{low:.3g}"), (1.0, f"{high:.3g}")]


def parallel_coordinates(trials: pd.DataFrame, space: dict[str, Dimension], metric: str, mode: str) -> bytes:
    """One line per scored trial through an axis per hyperparameter and the metric, coloured by the metric."""
    scored = finite(trials, "best_metric")
    names = [name for name in space if CONFIG_PREFIX + name in scored]
    metric_values = scored["best_metric"].to_numpy(dtype=float)
    low, high = metric_values.min(), metric_values.max()
    metric_positions = (metric_values - low) / (high - low) if high > low else np.full_like(metric_values, 0.5)
    columns, ticks = [], []
    for name in names:
        positions, labels = axis_position(scored[CONFIG_PREFIX + name], space[name])
        columns.append(positions)
        ticks.append(labels)
    columns.append(metric_positions)
    ticks.append([(0.0, f"{low:.4g}"), (1.0, f"{high:.4g}")])
    grid = np.column_stack(columns)  # (trials, axes)
    figure = Figure(figsize=(max(6, 1.8 * len(columns)), 4.2))
    axes = figure.subplots()
    colour_map = matplotlib.colormaps["viridis_r" if mode == "min" else "viridis"]
    for row, position in zip(grid, metric_positions, strict=True):
        axes.plot(range(len(columns)), row, color=colour_map(position), alpha=0.85, linewidth=1.4)
    for x, labels in enumerate(ticks):
        axes.axvline(x, color="0.3", linewidth=0.8)
        for y, text in labels:
            axes.text(x + 0.04, y, text, fontsize="small", va="center")
    axes.set_xticks(range(len(columns)), [*names, metric])
    axes.set_yticks([])
    axes.set_xlim(-0.2, len(columns) - 0.5)
    axes.set_title(f"Configs against {metric} ({len(scored)} scored trials; brighter is better)")
    for side in ("top", "right", "left"):
        axes.spines[side].set_visible(False)
    return to_png(figure)


def importance_chart(importance: ImportanceReport) -> bytes:
    """Each hyperparameter's share of the explained variance with its chance level, and the main-effect curves of
    the top three. Only for a search that backs a ranking (``importance.no_ranking_reason`` is None)."""
    ranked = importance.importance
    effects = [(entry.param, importance.main_effects[entry.param]) for entry in ranked[:3]]
    figure = Figure(figsize=(4 + 3.2 * len(effects), 3.6), layout="tight")
    axes = figure.subplots(1, 1 + len(effects), squeeze=False)
    bars = axes[0, 0]
    names = [entry.param for entry in ranked][::-1]
    bars.barh(names, [entry.share for entry in ranked][::-1], color="tab:blue", label="share")
    # A share is only as good as its margin over what the same hyperparameter gets with its values shuffled.
    bars.plot(
        [entry.chance_share for entry in ranked][::-1], names, "|", color="black", markersize=14, label="chance level"
    )
    bars.set(
        xlabel="share of the metric's variance", xlim=(0, 1), title=f"Importance (fANOVA, {importance.n_trials} trials)"
    )
    bars.legend(fontsize="small", loc="lower right")
    bars.grid(axis="x", alpha=0.3)
    for axis, (name, effect) in zip(axes[0, 1:], effects, strict=True):
        if effect.kind == "categorical":
            # Points at category positions: the differences stay visible (bars would start at 0) and values
            # such as "16" stay labels rather than numbers.
            positions = range(len(effect.x))
            axis.plot(positions, effect.y, "o", color="tab:orange")
            axis.set_xticks(positions, [str(x) for x in effect.x])
            axis.set_xlim(-0.5, len(effect.x) - 0.5)
        else:
            axis.plot(effect.x, effect.y, color="tab:orange")
            if effect.log:
                axis.set_xscale("log")
                axis.xaxis.set_minor_formatter(NullFormatter())  # labelled minor ticks overlap in a narrow panel
        axis.set(xlabel=name, ylabel=f"predicted {importance.metric}", title=f"Main effect of {name}")
        axis.grid(alpha=0.3)
    return to_png(figure)
