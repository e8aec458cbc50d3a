"""TensorBoard HParams for a whole experiment: the driver is the one writer of every HParams file.

One experiment config at the experiment root (a domain per searched hyperparameter, taken from the search
space, plus the trial status and the message of its last crash; metrics val_bpc, val_ppl and best val_bpc)
and one session per trial in the trial's own run directory, beside the curves the trainer writes there.
While a search runs, the config is written when the run starts and each trial's session, status running, when
the trial starts (tune_jobs.hparams_callback), so the dashboard lists trials as they start. After the search
the driver rewrites every session from Ray's records with the trial's final status and metrics, so trials that
errored before reporting, diverged or were stopped early are listed too. They are the only HParams sessions in
a trial's directory: a trial of a search writes its curves and samples there, but no session
(models.trial.run_trial's ``hparams_session``). Each file is replaced whole (a reader, TensorBoard reloading,
never sees half of one); nothing else in the directory is touched.

The protos are built directly (tensorboard's own summary helpers need TensorFlow), with models.tensorboard_log's
builders.
"""

from __future__ import annotations

import io
import math
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.fs
from tensorboard.compat.proto import event_pb2, summary_pb2
from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2
from tensorboard.summary.writer.record_writer import RecordWriter

from cluster.atomic_local_fs import for_ray_tune
from models.status import TrialStatus
from models.tensorboard_log import plugin_summary, session_end_summary
from tune_jobs.results.table import searched_config
from tune_jobs.space import SearchSpace

# Written when the trial starts and rewritten by every finish, under this one name. It sorts before any event file
# named by a writer (their names hold the creation time in seconds), which still matters in experiments from before
# trials stopped writing sessions of their own: TensorBoard shows the first session of a run it reads, in name order.
EVENTS_FILE = "events.out.tfevents.0000000000.textune.hparams"
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
    """(Re)write the driver's event file in ``directory`` of ``filesystem``, whole: on a local disk under a hidden
    temporary name renamed over the old file (cluster.atomic_local_fs), on an object store as one upload."""
    events = io.BytesIO()
    records = RecordWriter(events)
    records.write(event_pb2.Event(wall_time=time.time(), file_version="brain.Event:2").SerializeToString())
    for step, summary in summaries:
        records.write(event_pb2.Event(wall_time=time.time(), step=step, summary=summary).SerializeToString())
    filesystem.create_dir(directory, recursive=True)
    with for_ray_tune(filesystem).open_output_stream(f"{directory}/{EVENTS_FILE}") as handle:
        handle.write(events.getvalue())


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
    _write(filesystem, trial_dir, [(0, start), (0, end)])  # an end of status running: the dashboard says running


def write_hparams(
    filesystem: pyarrow.fs.FileSystem, experiment_dir: str, space: SearchSpace, trials: pd.DataFrame
) -> None:
    """Write the experiment config at ``experiment_dir`` of ``filesystem`` and every trial's final session in its
    directory there (replacing the session written when it started).

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
        _write(filesystem, trial_dir, [(0, start), *scalars, (step, end)])
