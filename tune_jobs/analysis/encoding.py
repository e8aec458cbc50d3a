"""Searched hyperparameters as bounded numeric features for the importance surrogate.

fANOVA averages over the search space with a uniform measure, so each feature is laid out the way the
searcher samples it:

- ``uniform``/``quniform``: the value, on [low, high];
- ``loguniform``: log10 of the value, so each decade weighs the same (main-effect curves use a log axis);
- ``randint``: the integer on [low - 0.5, high + 0.5], so every integer covers the same width;
- ``choice``/``grid``: the index of the value in the spec's list, on [-0.5, K - 0.5]: every value weighs the
  same and the forest splits between neighbouring indices (an ordinal code: a tree separates any subset of
  values in a few splits, and unlike one-hot columns it leaves no impossible combinations in the measure).

Observed values outside the space (points_to_evaluate, a warm start) widen the range or add a category.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from tune_jobs.results.table import CONFIG_PREFIX, plain_value
from tune_jobs.space import SearchSpace

CURVE_POINTS = 50


@dataclass(frozen=True)
class ParamAxis:
    """How one searched hyperparameter becomes one surrogate feature."""

    name: str
    kind: Literal["numeric", "categorical"]
    log: bool
    low: float  # the feature's range (encoded units)
    high: float
    integer: bool = False
    categories: tuple[Any, ...] = ()  # categorical: the values, in the spec's order

    def encode(self, values: pd.Series) -> np.ndarray:
        """(N,) feature values of a column of sampled values."""
        if self.kind == "categorical":
            index = {_key(value): i for i, value in enumerate(self.categories)}
            return np.array([index[_key(value)] for value in values], dtype=np.float64)
        numbers = values.astype(np.float64).to_numpy()
        return np.log10(numbers) if self.log else numbers

    def curve_points(self) -> tuple[list[Any], np.ndarray]:
        """Where to draw the main-effect curve: the values in the user's units and as features."""
        if self.kind == "categorical":
            return [plain_value(value) for value in self.categories], np.arange(len(self.categories), dtype=np.float64)
        if self.integer:
            encoded = np.unique(np.round(np.linspace(self.low + 0.5, self.high - 0.5, CURVE_POINTS)))
            return [int(v) for v in encoded], encoded
        encoded = np.linspace(self.low, self.high, CURVE_POINTS)
        shown = 10.0**encoded if self.log else encoded
        return [float(v) for v in shown], encoded


def param_axes(space: SearchSpace, trials: pd.DataFrame) -> list[ParamAxis]:
    """An axis per searched hyperparameter, its range widened to every value ``trials`` holds."""
    axes = []
    for name, dimension in space.items():
        observed = trials[CONFIG_PREFIX + name] if CONFIG_PREFIX + name in trials else pd.Series(dtype=object)
        if dimension.kind in ("choice", "grid"):
            categories = list(dimension.values)
            known = {_key(value) for value in categories}
            for value in observed:
                if _key(value) not in known:
                    known.add(_key(value))
                    categories.append(plain_value(value))
            axes.append(
                ParamAxis(name, "categorical", False, -0.5, len(categories) - 0.5, categories=tuple(categories))
            )
            continue
        log = dimension.kind == "loguniform"
        low, high = float(dimension.values[0]), float(dimension.values[1])
        if len(observed):
            low, high = min(low, float(observed.min())), max(high, float(observed.max()))
        if log:
            low, high = math.log10(low), math.log10(high)
        integer = dimension.kind == "randint"
        if integer:
            low, high = low - 0.5, high + 0.5
        axes.append(ParamAxis(name, "numeric", log, low, high, integer=integer))
    return axes


def _key(value: Any) -> str:
    # Parquet hands a column that mixes 1 and 0.5 back as floats: a whole float equals its integer here.
    value = plain_value(value)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return json.dumps(value, sort_keys=True, default=str)
