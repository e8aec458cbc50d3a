"""TensorBoard HParams for a whole experiment: the driver is the one writer of every HParams file.

One experiment config at the experiment root (a domain per searched hyperparameter, taken from the search
space, plus the trial status and the message of its last crash; metrics val_bpc, val_ppl and best val_bpc)
and one session per trial, in a run of its own inside the trial's directory: ``TRIAL_DIR/hparams-STATUS/``.
While a search runs, the config is written when the run starts and each trial's session, status running, when
the trial starts (tune_jobs.hparams_callback), so the dashboard lists trials as they start. After the search
the driver writes every session from Ray's records with the trial's final status and metrics, so trials that
errored before reporting, diverged or were stopped early are listed too. They are the only HParams sessions in
a trial's directory: a trial of a search writes its curves and samples there, but no session
(models.trial.run_trial's ``hparams_session``).

Why a run per status: TensorBoard keeps the first session start and session end it reads of a run (the first
metadata of each tag; both its loaders, measured on tensorboard 2.21), and does not reread a file replaced under
the same name. A session whose status changed is therefore a new run, ``hparams-<new status>/``, and the run of
the old status is then removed: an open dashboard drops the removed run and reads the new one, so it shows the
final status without a restart, and a TensorBoard started later finds one session per trial. Each event file
is written under a name TensorBoard does not read and renamed into place when whole, so a reader never sees
half of one; nothing else in the trial's directory is touched.

The protos are built directly (tensorboard's own summary helpers need TensorFlow), with models.tensorboard_log's
builders.
"""

from __future__ import annotations

import contextlib
import io
import math
import secrets
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.fs
from tensorboard.compat.proto import event_pb2, summary_pb2
from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2
from tensorboard.summary.writer.record_writer import RecordWriter

from cluster.atomic_local_fs import PARTIAL_MARK
from models.status import TrialStatus
from models.tensorboard_log import plugin_summary, session_end_summary
from tune_jobs.results.table import searched_config
from tune_jobs.space import SearchSpace

# The name of every event file written here (the experiment config at the root, a session in its run). It sorts
# before any event file named by a writer (their names hold the creation time in seconds), which still matters in
# experiments from before trials stopped writing sessions of their own: TensorBoard keeps the first session it
# reads of a run, in name order.
EVENTS_FILE = "events.out.tfevents.0000000000.textune.hparams"
# A trial's session is the run TRIAL_DIR/hparams-<status>/ (see the module's docstring).
SESSION_PREFIX = "hparams-"
# An event file is staged under this name: without "tfevents" in it, no TensorBoard reads it half-written.
STAGING_NAME = f".textune-hparams{PARTIAL_MARK}"
STATUS_HPARAM = "trial_status"
ERROR_HPARAM = "trial_error"  # the last crash's message (results.parquet's error column), empty if none
METRICS = ("val_bpc", "val_ppl", "best_val_bpc")


def data_type(kind: str, values: list[Any]) -> int:
    """The HParams data type of a dimension, which its domain and every session value share.

    Ranges are numbers. A choice or grid is boolean when every value is a boolean, a number when every value
    is a number, else text (a choice holding null among numbers is text: "null", "8"). A session value of
    another type than its domain's matches no filter in the dashboard, so both go through :func:`_typed`.
    """
    if kind not in ("choice", "grid"):
        return api_pb2.DATA_TYPE_FLOAT64
    if all(isinstance(v, bool) for v in values):
        return api_pb2.DATA_TYPE_BOOL
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return api_pb2.DATA_TYPE_FLOAT64
    return api_pb2.DATA_TYPE_STRING


def _typed(kind: int, value: Any) -> bool | float | str:
    """``value`` as the Python value of HParams type ``kind``; text as YAML writes it (null, true, 8)."""
    if kind == api_pb2.DATA_TYPE_BOOL:
        return bool(value)
    if kind == api_pb2.DATA_TYPE_FLOAT64:
        return float(value)
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    # Parquet may hand an integer of a column that also holds floats or nulls back as a float: 8.0 is "8".
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def hparam_types(space: SearchSpace) -> dict[str, int]:
    """The data type of every hyperparameter the HParams files declare (the searched ones and the status)."""
    types = {name: data_type(dimension.kind, dimension.values) for name, dimension in space.items()}
    return {**types, STATUS_HPARAM: api_pb2.DATA_TYPE_STRING, ERROR_HPARAM: api_pb2.DATA_TYPE_STRING}


def _hparam_info(name: str, kind: str, values: list[Any]) -> api_pb2.HParamInfo:
    info = api_pb2.HParamInfo(name=name, type=data_type(kind, values))
    if kind in ("choice", "grid"):
        info.domain_discrete.extend(_typed(info.type, v) for v in values)
    else:
        info.domain_interval.min_value, info.domain_interval.max_value = float(values[0]), float(values[1])
    return info


def experiment_summary(space: SearchSpace) -> summary_pb2.Summary:
    """The experiment config: hyperparameter domains from the search space and the metrics to show."""
    infos = [_hparam_info(name, dimension.kind, dimension.values) for name, dimension in space.items()]
    # Every status, running included: a value outside its discrete domain is filtered out by the dashboard.
    infos.append(_hparam_info(STATUS_HPARAM, "choice", [status.value for status in TrialStatus]))
    infos.append(api_pb2.HParamInfo(name=ERROR_HPARAM, type=api_pb2.DATA_TYPE_STRING))
    experiment = api_pb2.Experiment(
        time_created_secs=time.time(),
        hparam_infos=infos,
        metric_infos=[api_pb2.MetricInfo(name=api_pb2.MetricName(tag=tag), display_name=tag) for tag in METRICS],
    )
    return plugin_summary(metadata.EXPERIMENT_TAG, plugin_data_pb2.HParamsPluginData(experiment=experiment))


def session_summaries(
    hparams: dict[str, Any], status: TrialStatus, types: dict[str, int]
) -> tuple[summary_pb2.Summary, summary_pb2.Summary]:
    """Session start (the trial's hyperparameters, each of its type in ``types``) and end (its status)."""
    start = plugin_data_pb2.SessionStartInfo(start_time_secs=time.time())
    for name, value in hparams.items():
        kind = types.get(name, data_type("choice", [value]))
        if value is None and kind != api_pb2.DATA_TYPE_STRING:
            continue  # no value of the domain's type: the dashboard shows an empty cell
        typed = _typed(kind, value)
        if kind == api_pb2.DATA_TYPE_BOOL:
            start.hparams[name].bool_value = typed
        elif kind == api_pb2.DATA_TYPE_FLOAT64:
            start.hparams[name].number_value = typed
        else:
            start.hparams[name].string_value = typed
    start_data = plugin_data_pb2.HParamsPluginData(session_start_info=start)
    return plugin_summary(metadata.SESSION_START_INFO_TAG, start_data), session_end_summary(status)


def _write(filesystem: pyarrow.fs.FileSystem, directory: str, summaries: list[tuple[int, summary_pb2.Summary]]) -> None:
    """(Re)write the driver's event file in ``directory`` of ``filesystem``, whole: written under a staging name
    TensorBoard does not read, then moved over the old file (a rename on a local disk). A failed write (a full
    disk) removes the staging file and keeps the old one."""
    events = io.BytesIO()
    records = RecordWriter(events)
    records.write(event_pb2.Event(wall_time=time.time(), file_version="brain.Event:2").SerializeToString())
    for step, summary in summaries:
        records.write(event_pb2.Event(wall_time=time.time(), step=step, summary=summary).SerializeToString())
    filesystem.create_dir(directory, recursive=True)
    staging = f"{directory}/{STAGING_NAME}{secrets.token_hex(4)}"
    try:
        with filesystem.open_output_stream(staging) as handle:
            handle.write(events.getvalue())
        filesystem.move(staging, f"{directory}/{EVENTS_FILE}")
    except BaseException:
        with contextlib.suppress(OSError):
            filesystem.delete_file(staging)
        raise


def _write_session(
    filesystem: pyarrow.fs.FileSystem,
    trial_dir: str,
    status: TrialStatus,
    summaries: list[tuple[int, summary_pb2.Summary]],
) -> None:
    """Write a trial's session as the run ``trial_dir/hparams-<status>/``, then remove its other session runs (and
    the session an older textune wrote into the trial's own run): the new run is complete before the old goes."""
    current = f"{SESSION_PREFIX}{status.value}"
    _write(filesystem, f"{trial_dir}/{current}", summaries)
    for info in filesystem.get_file_info(pyarrow.fs.FileSelector(trial_dir)):
        if info.type == pyarrow.fs.FileType.Directory and info.base_name.startswith(SESSION_PREFIX):
            if info.base_name != current:
                filesystem.delete_dir(info.path)
        elif info.type == pyarrow.fs.FileType.File and info.base_name == EVENTS_FILE:
            filesystem.delete_file(info.path)


def _scalar(tag: str, value: float) -> summary_pb2.Summary:
    summary = summary_pb2.Summary()
    summary.value.add(tag=tag, simple_value=value)
    return summary


def write_experiment_config(filesystem: pyarrow.fs.FileSystem, experiment_dir: str, space: SearchSpace) -> None:
    """Write the experiment config (:func:`experiment_summary`) at ``experiment_dir`` of ``filesystem``."""
    _write(filesystem, experiment_dir, [(0, experiment_summary(space))])


def write_running_session(
    filesystem: pyarrow.fs.FileSystem, trial_dir: str, space: SearchSpace, config: dict[str, Any]
) -> None:
    """Write the session of a trial that just started with the searched ``config``: status running, no metrics."""
    hparams = {**config, STATUS_HPARAM: TrialStatus.RUNNING.value, ERROR_HPARAM: ""}
    start, end = session_summaries(hparams, TrialStatus.RUNNING, hparam_types(space))
    # An end of status running: the dashboard says running (the final status comes as a run of its own).
    _write_session(filesystem, trial_dir, TrialStatus.RUNNING, [(0, start), (0, end)])


def write_hparams(
    filesystem: pyarrow.fs.FileSystem, experiment_dir: str, space: SearchSpace, trials: pd.DataFrame
) -> None:
    """Write the experiment config at ``experiment_dir`` of ``filesystem`` and every trial's final session in its
    directory there (replacing the session written when it started, which a TensorBoard reading the experiment
    then drops).

    Raises OSError when the storage refuses a write; each file is then either its old or its new self.
    """
    write_experiment_config(filesystem, experiment_dir, space)
    types = hparam_types(space)
    for _, row in trials.iterrows():
        trial_dir = f"{experiment_dir}/{Path(row['trial_dir']).name}"
        error = row["error"] if isinstance(row["error"], str) else ""  # None/NaN: the trial never crashed
        status = TrialStatus(row["status"])
        hparams = {**searched_config(row), STATUS_HPARAM: status.value, ERROR_HPARAM: error}
        start, end = session_summaries(hparams, status, types)
        step = int(row["tokens"])
        final = {"val_bpc": row["last_val_bpc"], "val_ppl": row["last_val_ppl"], "best_val_bpc": row["best_val_bpc"]}
        # A trial that never reported has no metric values; TensorBoard shows it with empty metric cells.
        scalars = [(step, _scalar(tag, float(v))) for tag, v in final.items() if not math.isnan(v)]
        _write_session(filesystem, trial_dir, status, [(0, start), *scalars, (step, end)])
