"""Learning-curve tables: every evaluation of every configuration of a finished search, kept for replays.

A table is a directory of two files::

    curves.parquet   a row per evaluation: config_id, seed, source_trial, config/<name> per hyperparameter,
                     tokens, val_bpc (and val_ppl when recorded), train_loss, wall_s and flops (both for the
                     interval since the previous evaluation of that curve)
    manifest.json    the spec the curves were recorded with, the machine, package versions, the metric and the
                     sha256 of curves.parquet

``config_id`` identifies a configuration across seeds (its hyperparameters without ``seed``), so a
configuration trained with several seeds states the table's own seed noise. Any finished textune experiment
becomes a table (:func:`table_from_experiment`); recording one (benchmarks/record_table.py) is a grid search
with FIFO read back the same way. :func:`load_table` reads the manifest into :class:`TableManifest` and refuses
a table whose manifest is not one, or whose Parquet does not match its checksum or lacks a column it names.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Literal

import pandas as pd
from pydantic import Field, NonNegativeInt, PositiveInt, model_validator

from textune import strict_json
from textune.config import StrictModel, shown_value, validate
from textune.digest import sha256_of
from textune.errors import TextuneError
from tune_jobs.cost import device_kind, devices_per_trial
from tune_jobs.experiment import EVALUATIONS_FILE, Experiment
from tune_jobs.results.parquet import read_evaluations, read_trials
from tune_jobs.results.table import CONFIG_PREFIX, plain_value, searched_config
from tune_jobs.space import trainer_params
from tune_jobs.spec import JobSpec, load_saved_spec

CURVES_FILE = "curves.parquet"
MANIFEST_FILE = "manifest.json"
FORMAT_VERSION = 1
SEED_KEY = "seed"
PACKAGES = ("textune", "ray", "torch", "hyperopt", "numpy", "pandas", "pyarrow", "scikit-learn", "scipy")
# The columns every reader of a table takes from each row, besides the metric and ``config/<name>`` per param.
CURVE_COLUMNS = ("config_id", "seed", "source_trial", "tokens", "train_loss", "wall_s", "flops")


class TableManifest(StrictModel):
    """``manifest.json``: what a table's curves were recorded with. ``source`` and ``source_evaluations_sha256``
    name one experiment, or a list of them for a merged recording (benchmarks/record_table.py)."""

    format: Literal[1]
    source: str | list[str]
    source_evaluations_sha256: str | list[str] | None = None
    spec: JobSpec
    params: list[str]  # the searched hyperparameters but seed, in the spec's order
    metric: str
    mode: Literal["min", "max"]
    max_tokens: PositiveInt
    eval_every_tokens: PositiveInt
    device_kind: str
    devices_per_trial: float = Field(gt=0, allow_inf_nan=False)
    machine: dict[str, Any]
    packages: dict[str, str | None]
    configs: NonNegativeInt
    curves: NonNegativeInt
    parquet_sha256: str = Field(pattern="^[0-9a-f]{64}$")  # of curves.parquet
    rows: NonNegativeInt

    @model_validator(mode="after")
    def _restates_its_spec(self) -> TableManifest:
        # metric, mode and params repeat the spec for readers of the JSON; a reader takes them from here, so an
        # edit of one would replay under another metric than the curves were recorded for.
        for key, recorded in (
            ("metric", self.spec.metric),
            ("mode", self.spec.mode),
            ("params", searched_params(self.spec)),
        ):
            if getattr(self, key) != recorded:
                raise ValueError(f'"{key}" = {getattr(self, key)!r} differs from its spec\'s {recorded!r}')
        return self


@dataclass
class CurveTable:
    """``curves``: a row per evaluation (columns in the module docstring); ``manifest``: the recording's record,
    as plain data with :class:`TableManifest`'s keys (``parquet_sha256`` and ``rows`` once written)."""

    curves: pd.DataFrame
    manifest: dict[str, Any]

    @property
    def metric(self) -> str:
        return str(self.manifest["metric"])

    @property
    def mode(self) -> str:
        return str(self.manifest["mode"])

    @property
    def params(self) -> list[str]:
        """The searched hyperparameters (without ``seed``), in the spec's order."""
        return list(self.manifest["params"])

    @property
    def spec(self) -> JobSpec:
        return JobSpec.model_validate(self.manifest["spec"])

    def best_value(self) -> float:
        """The best finite metric of any evaluation in the table."""
        values = self.curves[self.metric].astype(float)
        finite = values[values.map(math.isfinite)]
        return float(finite.min() if self.mode == "min" else finite.max())


def config_id(config: dict[str, Any]) -> str:
    """A short stable id of the hyperparameters a trainer receives: ``seed`` and ``ignored_`` control knobs
    excluded, so one training run under several seeds or knob values shares its id."""
    plain = {name: plain_value(value) for name, value in sorted(trainer_params(config).items()) if name != SEED_KEY}
    return hashlib.sha1(json.dumps(plain, sort_keys=True, default=str).encode()).hexdigest()[:10]


def table_from_experiment(experiment: Experiment) -> CurveTable:
    """The learning-curve table of a finished experiment, from its results.parquet and evaluations.parquet.

    Raises TextuneError when the experiment has no evaluations or fewer than two trials with one: a replay
    needs curves to choose between.
    """
    spec = load_saved_spec(experiment)
    trials, evaluations = read_trials(experiment), read_evaluations(experiment)
    if evaluations.empty or "tokens" not in evaluations:
        raise TextuneError(
            f"experiment {experiment.root} has no evaluations (no trial reported a result), so "
            "there are no learning curves to replay.",
            f"Resume it until trials report (textune resume {experiment.root}), or replay another.",
        )
    reported = trials[trials["trial_id"].isin(set(evaluations["trial_id"]))]
    if len(reported) < 2:
        raise TextuneError(
            f"experiment {experiment.root} has {len(reported)} trial with evaluations; a replay "
            "compares configurations, so it needs at least 2.",
            "Replay an experiment with more trials (num_samples >= 2).",
        )
    params = searched_params(spec)
    curves = pd.concat([_curve(row, evaluations, spec, params) for _, row in reported.iterrows()], ignore_index=True)
    filesystem, path = experiment.filesystem()
    with filesystem.open_input_stream(f"{path}/{EVALUATIONS_FILE}") as handle:
        source_sha = hashlib.sha256(handle.read()).hexdigest()
    return make_table(curves, spec, {"source": experiment.root, "source_evaluations_sha256": source_sha})


def searched_params(spec: JobSpec) -> list[str]:
    """The hyperparameters a table keeps per row: the spec's searched ones but ``seed`` (a column of its own)."""
    return [name for name in spec.space if name != SEED_KEY]


def make_table(curves: pd.DataFrame, spec: JobSpec, source: dict[str, Any]) -> CurveTable:
    """A table of ``curves`` (the columns of the module docstring) recorded with ``spec``; ``source`` says where
    the curves came from and goes into the manifest."""
    manifest = {
        "format": FORMAT_VERSION,
        **source,
        "spec": spec.model_dump(mode="json", exclude_none=True),
        "params": searched_params(spec),
        "metric": spec.metric,
        "mode": spec.mode,
        "max_tokens": spec.budget.max_tokens,
        "eval_every_tokens": spec.budget.eval_every_tokens,
        "device_kind": device_kind(spec.resources),
        "devices_per_trial": devices_per_trial(spec.resources),
        "machine": machine_record(),
        "packages": package_versions(),
        "configs": int(curves["config_id"].nunique()),
        "curves": int(curves["source_trial"].nunique()),
    }
    return CurveTable(curves, manifest)


def _curve(trial: pd.Series, evaluations: pd.DataFrame, spec: JobSpec, params: list[str]) -> pd.DataFrame:
    """One trial's evaluations as table rows, one per token count (a restart's repeated reports keep the last)."""
    config = searched_config(trial)
    history = evaluations[evaluations["trial_id"] == trial["trial_id"]]
    history = history.drop_duplicates("tokens", keep="last").sort_values("tokens")
    # Ray's time_total_s and the trainer's flops are cumulative; a table keeps each evaluation interval's share.
    elapsed = history["time_total_s"].astype(float) if "time_total_s" in history else pd.Series(0.0, history.index)
    flops = history["flops"].astype(float).ffill().fillna(0.0) if "flops" in history else pd.Series(0.0, history.index)
    rows = pd.DataFrame(
        {
            "config_id": config_id(config),
            "seed": int(config.get(SEED_KEY, spec.seed)),
            "source_trial": str(trial["trial_id"]),
            **{CONFIG_PREFIX + name: config.get(name) for name in params},
            "tokens": history["tokens"].astype("int64").to_numpy(),
            "val_bpc": history["val_bpc"].astype(float).to_numpy(),
            "train_loss": history["train_loss"].astype(float).to_numpy() if "train_loss" in history else math.nan,
            "wall_s": elapsed.diff().fillna(elapsed).clip(lower=0.0).to_numpy(),
            "flops": flops.diff().fillna(flops).clip(lower=0.0).to_numpy(),
        }
    )
    if "val_ppl" in history:
        rows["val_ppl"] = history["val_ppl"].astype(float).to_numpy()
    return rows


def machine_record() -> dict[str, Any]:
    """Where the table was recorded: wall times only compare on the same kind of machine."""
    return {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "load_average_1m": os.getloadavg()[0],
    }


def package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def write_table(table: CurveTable, directory: Path) -> Path:
    """Write ``curves.parquet`` and ``manifest.json`` (with the Parquet's sha256) into ``directory``.

    Each file is written under a temporary name and renamed, so a reader never sees half a file; an earlier
    table in the directory is replaced.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    directory.mkdir(parents=True, exist_ok=True)
    staging = directory / f".{CURVES_FILE}.tmp"
    pq.write_table(pa.Table.from_pandas(table.curves, preserve_index=False), staging)
    # Through the model load_table reads it with: a table that is written can be read back.
    manifest = TableManifest.model_validate(
        {**table.manifest, "parquet_sha256": sha256_of(staging), "rows": len(table.curves)}
    ).model_dump(mode="json", exclude_none=True)
    manifest_staging = directory / f".{MANIFEST_FILE}.tmp"
    manifest_staging.write_text(strict_json.dumps(manifest, indent=2, default=str) + "\n", encoding="utf-8")
    staging.replace(directory / CURVES_FILE)
    manifest_staging.replace(directory / MANIFEST_FILE)
    table.manifest = manifest
    return directory


def load_table(directory: Path) -> CurveTable:
    """Read a table written by :func:`write_table`: its manifest checked against :class:`TableManifest`, its
    Parquet against the manifest's checksum and for the columns the manifest names. Raises TextuneError (naming
    the file and the key) for anything else."""
    manifest_path, curves_path = directory / MANIFEST_FILE, directory / CURVES_FILE
    rebuild = (
        f"Rebuild the table: delete {directory} and run textune replay on its experiment again "
        "(or re-record it with benchmarks/record_table.py)."
    )
    if not manifest_path.is_file() or not curves_path.is_file():
        raise TextuneError(
            f"{directory} is not a learning-curve table (it needs {MANIFEST_FILE} and {CURVES_FILE}).",
            "Give a directory written by textune replay (EXPERIMENT/replay/table) or benchmarks/record_table.py.",
        )
    manifest = _read_manifest(manifest_path, rebuild)
    found = sha256_of(curves_path)
    if found != manifest.parquet_sha256:
        raise TextuneError(
            f"table {curves_path} fails its checksum: its manifest records sha256 {manifest.parquet_sha256[:12]}…, "
            f"the file has {found[:12]}…, so the curves changed after they were recorded.",
            rebuild,
        )
    import pyarrow.parquet as pq

    curves = pq.read_table(curves_path).to_pandas()
    missing = [
        column
        for column in (*CURVE_COLUMNS, manifest.metric, *(CONFIG_PREFIX + name for name in manifest.params))
        if column not in curves
    ]
    if missing:
        raise TextuneError(
            f"table {curves_path} lacks the column(s) {', '.join(missing)} that its manifest {manifest_path} "
            "names (metric, params) or every table has.",
            rebuild,
        )
    return CurveTable(curves, manifest.model_dump(mode="json", exclude_none=True))


def _read_manifest(path: Path, hint: str) -> TableManifest:
    """``path`` as a TableManifest; TextuneError naming the file (and the key, line or byte) otherwise."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise TextuneError(f"table manifest {path} is not UTF-8 text (byte {exc.start}).", hint) from exc
    except json.JSONDecodeError as exc:
        raise TextuneError(
            f"table manifest {path} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}).", hint
        ) from exc
    if not isinstance(data, dict):  # validate would take null for an empty config
        raise TextuneError(f"table manifest {path} is not a JSON object (it holds {shown_value(data)}).", hint)
    try:
        return validate(TableManifest, data, f"table manifest {path}")
    except TextuneError as exc:  # validate's hint speaks of configs a user writes; a manifest is rebuilt
        raise TextuneError(exc.message, hint) from exc
