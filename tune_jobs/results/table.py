"""The results tables' vocabulary: ``trials`` (a row per trial, best first) and ``evaluations`` (a row per report).

A trial row holds its status, its searched hyperparameters as ``config/<name>`` columns, its best and last
metrics, its cost, and ``checkpoint`` with ``checkpoint_sha256``: its best checkpoint on storage and that
checkpoint's checksum (both null when it kept none, or it was deleted). ``best/`` is a copy of the first such
checkpoint, best first (:func:`best_with_checkpoint`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from textune.errors import TextuneError

CONFIG_PREFIX = "config/"


@dataclass
class ExperimentResults:
    """``trials``: a row per trial, best first; ``evaluations``: a row per report of every trial."""

    trials: pd.DataFrame
    evaluations: pd.DataFrame

    def best(self) -> pd.Series:
        return best_trial(self.trials)


def best_trial(trials: pd.DataFrame) -> pd.Series:
    """The first row of a best-first trial table that has a finite metric."""
    scored = trials[trials["best_metric"].map(math.isfinite)] if not trials.empty else trials
    if scored.empty:
        raise TextuneError(
            "no trial of this experiment reported a finite metric, so there is no best trial.",
            "Check the trials' status column (textune export); resume or rerun the job.",
        )
    return scored.iloc[0]


def best_with_checkpoint(trials: pd.DataFrame) -> pd.Series | None:
    """The best trial (best-first table, finite metric) whose checkpoint is on storage: the one ``best/`` copies."""
    if trials.empty or "checkpoint_sha256" not in trials:
        return None
    kept = trials[trials["best_metric"].map(math.isfinite) & trials["checkpoint_sha256"].notna()]
    return kept.iloc[0] if not kept.empty else None


def config_column(values: list[Any]) -> pd.Series:
    """A config column in its values' own type, so it keeps that type in Parquet and when read back.

    Booleans, integers and numbers (integers mixed with floats) get a numeric or boolean dtype; when some
    values are None it is pandas' nullable one (``boolean``, ``Int64``, ``Float64``), so a null stays null
    (``<NA>``; Parquet null) instead of becoming NaN, and integers stay integers. Anything else (text) is kept
    as objects, None included.
    """
    present = [value for value in values if value is not None]
    missing = len(present) < len(values)
    if present and all(isinstance(v, (bool, np.bool_)) for v in present):
        dtype = "boolean" if missing else "bool"
    elif present and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in present):
        dtype = "Int64" if missing else "int64"
    elif present and all(isinstance(v, (int, float, np.number)) and not isinstance(v, bool) for v in present):
        dtype = "Float64" if missing else "float64"
    else:
        dtype = "object"
    return pd.Series(values, dtype=dtype)


def searched_config(row: pd.Series) -> dict[str, Any]:
    """The sampled hyperparameters of a trial row."""
    return {
        key[len(CONFIG_PREFIX) :]: plain_value(value) for key, value in row.items() if key.startswith(CONFIG_PREFIX)
    }


def plain_value(value: Any) -> Any:
    """NumPy scalars from Parquet as Python numbers, a missing value as None (for YAML/JSON output and configs).

    Missing is pandas' ``<NA>`` or NaN: a config column of text keeps a null as NaN once read back, and no
    config value textune samples is NaN itself (bounds and choices are finite or null).
    """
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    return value.item() if hasattr(value, "item") else value
