"""One evaluation of a configuration at a token count: recorded in the table, or extrapolated from it.

A configuration the table holds, at a token count its curve reached, gets the recorded evaluation (of the
curve with the replay's seed when it was recorded with several). Anything else is extrapolated, by one of:

``nearest``    the evaluation at those tokens of the nearest recorded configuration in normalised space
               (numbers scaled to [0, 1] over the table, on a log scale where the space is logarithmic or
               the values are positive choices; other values one-hot)
``surrogate``  a random forest (scikit-learn) from the normalised configuration and log tokens to the metric;
               wall seconds and FLOPs still come from the nearest recorded configuration

Each :class:`Evaluation` says whether it was extrapolated, so every replay reports its extrapolated share;
:func:`held_out_error` measures either method on configurations left out of the table.
"""

from __future__ import annotations

import math
from typing import Any, Literal, NamedTuple

import numpy as np
import pandas as pd

from tune_jobs.replay.table import SEED_KEY, CurveTable
from tune_jobs.results.table import CONFIG_PREFIX, plain_value
from tune_jobs.space import IGNORED_PREFIX

Fill = Literal["nearest", "surrogate"]
FILLS: tuple[Fill, ...] = ("nearest", "surrogate")
SURROGATE_TREES = 60


class Evaluation(NamedTuple):
    """``metric`` at the evaluation; ``wall_s`` and ``flops`` for the interval since the previous one."""

    metric: float
    train_loss: float
    wall_s: float
    flops: float
    extrapolated: bool


class _Encoder:
    """Configurations as points in [0, 1]^d, fitted on the table's recorded values."""

    def __init__(self, table: CurveTable) -> None:
        space = table.spec.space
        self.columns: list[tuple[str, str, Any]] = []  # (param, "num" or "cat", (low, high, log) or category)
        for name in trained_params(table):
            values = table.curves[CONFIG_PREFIX + name].dropna().map(plain_value).unique().tolist()
            kind = space[name].kind if name in space else "choice"
            if values and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
                log = kind == "loguniform" or (kind in ("choice", "grid") and min(values) > 0)
                scaled = [math.log(v) if log else float(v) for v in values]
                self.columns.append((name, "num", (min(scaled), max(scaled), log)))
            else:
                self.columns.extend((name, "cat", value) for value in values)

    def encode(self, config: dict[str, Any]) -> list[float]:
        point = []
        for name, kind, detail in self.columns:
            value = plain_value(config.get(name))
            if kind == "cat":
                point.append(1.0 if value == detail else 0.0)
                continue
            low, high, log = detail
            number = float(value) if value is not None else low
            number = math.log(number) if log and number > 0 else number
            point.append((number - low) / (high - low) if high > low else 0.0)
        return point


def trained_params(table: CurveTable) -> list[str]:
    """The hyperparameters that reach the trainer: an ``ignored_`` control knob cannot change a curve, so two
    configurations that differ only there share their evaluations."""
    return [name for name in table.params if not name.startswith(IGNORED_PREFIX)]


def config_key(config: dict[str, Any], params: list[str]) -> tuple[Any, ...]:
    """A hashable key of a configuration's hyperparameters; floats compared to 12 significant digits."""
    key = []
    for name in params:
        value = plain_value(config.get(name))
        key.append(float(f"{value:.12g}") if isinstance(value, float) else value)
    return tuple(key)


class CurveLookup:
    """Evaluations of any configuration of the table's space (see the module docstring)."""

    def __init__(self, table: CurveTable, fill: Fill = "nearest") -> None:
        self.table, self.fill, self.metric = table, fill, table.metric
        self.params = trained_params(table)
        self.encoder = _Encoder(table)
        curves = table.curves
        configs = curves.drop_duplicates("config_id")
        self.config_ids = configs["config_id"].tolist()
        self.points = np.array([self.encoder.encode(self._config_of(row)) for _, row in configs.iterrows()])
        self.by_key = {config_key(self._config_of(row), self.params): row["config_id"] for _, row in configs.iterrows()}
        self.seeds = {cid: sorted(group.unique().tolist()) for cid, group in curves.groupby("config_id")["seed"]}
        columns = [self.metric, "train_loss", "wall_s", "flops"]
        self.rows = {
            key: dict(zip(group["tokens"].tolist(), group[columns].itertuples(index=False, name=None), strict=True))
            for key, group in curves.groupby(["config_id", "seed"])
        }
        # Per token count: which configurations (as indices into self.points) have a recorded evaluation there.
        position = {cid: i for i, cid in enumerate(self.config_ids)}
        self.at_tokens = {
            int(t): np.array(sorted(position[c] for c in g.unique())) for t, g in curves.groupby("tokens")["config_id"]
        }
        self.token_grid = np.array(sorted(self.at_tokens))
        self._surrogate: Any = None
        self._predicted: dict[tuple[Any, ...], dict[int, float]] = {}

    def _config_of(self, row: pd.Series) -> dict[str, Any]:
        return {name: row[CONFIG_PREFIX + name] for name in self.params}

    def evaluation(self, config: dict[str, Any], tokens: int, seed: int = 0) -> Evaluation:
        """The evaluation of ``config`` at ``tokens``; ``seed`` picks among a configuration's recorded seeds."""
        key = config_key(config, self.params)
        cid = self.by_key.get(key)
        if cid is not None:
            recorded = self._recorded(cid, int(config.get(SEED_KEY, seed)), tokens)
            if recorded is not None:
                return Evaluation(*recorded, extrapolated=False)
        neighbour = self._nearest(config, tokens)
        # The neighbour was chosen among configurations recorded at these tokens, so one of its curves has them.
        recorded = self._recorded(neighbour, seed, self._grid_tokens(tokens))
        assert recorded is not None
        metric, train_loss, wall_s, flops = recorded
        if self.fill == "surrogate":
            metric = self._predict(key, config, tokens)
        return Evaluation(metric, train_loss, wall_s, flops, extrapolated=True)

    def _recorded(self, cid: str, seed: int, tokens: int) -> tuple[float, float, float, float] | None:
        """The configuration's evaluation at ``tokens`` under ``seed`` (a recorded seed, else seed modulo the
        recorded ones); if that curve stopped earlier (ASHA), under another seed that got there; else None."""
        seeds = self.seeds[cid]
        chosen = seed if seed in seeds else seeds[seed % len(seeds)]
        for candidate in (chosen, *seeds):
            row = self.rows[(cid, candidate)].get(int(tokens))
            if row is not None:
                return row
        return None

    def _grid_tokens(self, tokens: int) -> int:
        """The recorded token count closest to ``tokens``."""
        return int(self.token_grid[np.abs(self.token_grid - tokens).argmin()])

    def _nearest(self, config: dict[str, Any], tokens: int) -> str:
        candidates = self.at_tokens[self._grid_tokens(tokens)]
        distances = np.abs(self.points[candidates] - np.array(self.encoder.encode(config))).sum(axis=1)
        return self.config_ids[int(candidates[int(distances.argmin())])]

    def _predict(self, key: tuple[Any, ...], config: dict[str, Any], tokens: int) -> float:
        if key not in self._predicted:  # a whole curve per configuration: one forest call, not one per evaluation
            if self._surrogate is None:
                self._surrogate = fit_surrogate(self.table, self.encoder)
            point = self.encoder.encode(config)
            grid = sorted({int(tokens), *self.token_grid.tolist()})
            features = np.array([[*point, math.log(t)] for t in grid])
            self._predicted[key] = dict(zip(grid, self._surrogate.predict(features).tolist(), strict=True))
        curve = self._predicted[key]
        if int(tokens) not in curve:
            point = self.encoder.encode(config)
            curve[int(tokens)] = float(self._surrogate.predict(np.array([[*point, math.log(tokens)]]))[0])
        return curve[int(tokens)]


def fit_surrogate(table: CurveTable, encoder: _Encoder) -> Any:
    """A seeded random forest from (normalised configuration, log tokens) to the metric, on finite evaluations."""
    from sklearn.ensemble import RandomForestRegressor

    curves = table.curves[table.curves[table.metric].map(math.isfinite)]
    params = trained_params(table)
    features = np.array(
        [
            [*encoder.encode({n: row[CONFIG_PREFIX + n] for n in params}), math.log(row["tokens"])]
            for _, row in curves.iterrows()
        ]
    )
    model = RandomForestRegressor(n_estimators=SURROGATE_TREES, min_samples_leaf=2, random_state=0, n_jobs=1)
    return model.fit(features, curves[table.metric].to_numpy())


def held_out_error(table: CurveTable, fill: Fill, max_folds: int = 20) -> dict[str, Any]:
    """The error of ``fill`` on configurations the table does not hold: mean absolute and root-mean-square error
    of the metric over held-out curves, in the metric's unit.

    Leave-one-configuration-out when the table has at most ``max_folds`` configurations, else ``max_folds``
    folds of whole configurations (every seed of a configuration is held out together). Non-finite recorded
    metrics (diverged trials) are left out of the error.
    """
    ids = table.curves["config_id"].drop_duplicates().tolist()
    folds = min(len(ids), max_folds)
    errors: list[float] = []
    for fold in range(folds):
        held = set(ids[fold::folds])
        train = CurveTable(table.curves[~table.curves["config_id"].isin(held)], table.manifest)
        lookup = CurveLookup(train, fill)
        for _, row in table.curves[table.curves["config_id"].isin(held)].iterrows():
            truth = float(row[table.metric])
            if math.isfinite(truth) and int(row["tokens"]) in lookup.at_tokens:
                config = {name: row[CONFIG_PREFIX + name] for name in trained_params(table)}
                errors.append(lookup.evaluation(config, int(row["tokens"])).metric - truth)
    values = np.array(errors)
    scheme = "leave-one-configuration-out" if folds == len(ids) else f"{folds}-fold by configuration"
    return {
        "fill": fill,
        "scheme": scheme,
        "evaluations": len(values),
        "mae": float(np.abs(values).mean()) if len(values) else math.nan,
        "rmse": float(np.sqrt((values**2).mean())) if len(values) else math.nan,
    }
