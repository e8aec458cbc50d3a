"""An experiment's results as tables: a row per trial and a row per evaluation.

Read from Ray Tune's own records (``ExperimentAnalysis``), so they work for finished, interrupted and
resumed experiments alike. Each trial gets one status:

``completed``      trained its whole budget
``early_stopped``  stopped by the scheduler (ASHA) at a rung
``diverged``/``oom`` reported by the trainer (its metric is inf; the search went on)
``errored``        raised an exception (after ``max_failures`` retries), or its config was refused (no retries)
``unfinished``     pending, running or paused when the driver stopped; ``textune resume`` continues it

Every trial also records ``failures`` (how often it crashed and was restarted, by an exception or a lost
node) and ``error``: the message of its last crash (for an ``errored`` trial, why it ended), else empty; and
``checkpoint`` with ``checkpoint_sha256``: its best checkpoint on storage and that checkpoint's checksum (both
null when it kept none, or it was deleted). ``best/`` is a copy of the first such checkpoint, best first, and
is trusted only when its checksum is the one recorded.

Reading the tables back refuses a missing, damaged or foreign file in one paragraph naming it and how to
rebuild it.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from textune.errors import TextuneError
from tune_jobs.cost import trial_cost
from tune_jobs.experiment import BEST_DIR, EVALUATIONS_FILE, RESULTS_FILE, SPEC_FILE, Experiment, open_experiment
from tune_jobs.spec import JobSpec

logger = logging.getLogger(__name__)

CONFIG_PREFIX = "config/"
# Reported by every trial so the results record where it ran (node, GPUs Ray assigned).
PLACEMENT_KEYS = ("node_id", "gpu_ids")
TRAINER_FAILURES = ("diverged", "oom")
STATUSES = ("completed", "early_stopped", *TRAINER_FAILURES, "errored", "unfinished")
# Ray's bookkeeping columns that say nothing about the model.
# The columns (and their kinds) the readers of each table rely on; a table without them is not textune's.
TABLE_COLUMNS = {
    RESULTS_FILE: {"trial_id": "text", "status": "text", "best_metric": "number", "best_val_bpc": "number",
                   "best_val_ppl": "number", "floor_bpc": "number", "tokens": "number", "flops": "number",
                   "wall_time_s": "number", "device_kind": "text", "device_hours": "number", "checkpoint": "text",
                   "trial_dir": "text"},
    EVALUATIONS_FILE: {"trial_id": "text", "tokens": "number"},
}
RAY_COLUMNS = ("done", "training_iteration", "date", "pid", "hostname", "node_ip", "time_since_restore",
               "iterations_since_restore", "checkpoint_dir_name", "should_checkpoint", "time_this_iter_s")


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
        raise TextuneError("no trial of this experiment reported a finite metric, so there is no best trial.",
                           "Check the trials' status column (textune export); resume or rerun the job.")
    return scored.iloc[0]


def trial_status(ray_status: str, last: dict[str, Any], max_tokens: int) -> str:
    """One of STATUSES from Ray's trial status and the trainer's last report."""
    reported = last.get("status")
    # A trial whose config the trainer refused reports "errored" itself and ends (tune_jobs.trainable).
    if ray_status == "ERROR" or reported == "errored":
        return "errored"
    if reported in TRAINER_FAILURES:
        return reported
    if ray_status != "TERMINATED":
        return "unfinished"
    if reported == "completed" or last.get("tokens", 0) >= max_tokens:
        return "completed"
    return "early_stopped"


def collect(experiment: Experiment, spec: JobSpec) -> ExperimentResults:
    """Read every trial and evaluation of ``experiment`` from Ray Tune's records."""
    from ray.tune import ExperimentAnalysis

    from tune_jobs.ray_state import check_ray_state

    check_ray_state(experiment)
    filesystem, path = experiment.filesystem()
    analysis = ExperimentAnalysis(path, storage_filesystem=filesystem, default_metric=spec.metric,
                                  default_mode=spec.mode)
    sign = 1.0 if spec.mode == "min" else -1.0
    rows, configs, evaluations = [], [], []
    for trial in analysis.trials:
        history = analysis.trial_dataframes.get(trial.trial_id, pd.DataFrame())
        last = trial.last_result or {}
        best_metric = _best(history, spec.metric, sign)
        checkpoint, checkpoint_sha256 = _checkpoint_on_storage(
            analysis.get_best_checkpoint(trial) if math.isfinite(best_metric) else None)
        configs.append(trial.config)
        rows.append({
            "trial_id": trial.trial_id,
            "status": trial_status(trial.status, last, spec.budget.max_tokens),
            **{CONFIG_PREFIX + key: value for key, value in trial.config.items()},
            **trial_cost(last, spec.resources),  # tokens, flops, wall time, device-hours
            "best_metric": best_metric,
            "best_val_bpc": _best(history, "val_bpc", 1.0),
            "best_val_ppl": _best(history, "val_ppl", 1.0),
            "last_val_bpc": float(last.get("val_bpc", math.nan)),
            "last_val_ppl": float(last.get("val_ppl", math.nan)),
            "floor_bpc": float(last.get("floor_bpc", math.nan)),  # the corpus' entropy, when it is known
            "evaluations": len(history),
            "checkpoint": checkpoint,
            "checkpoint_sha256": checkpoint_sha256,
            "trial_dir": trial.path,
            **{key: last.get(key) for key in PLACEMENT_KEYS},
            "failures": trial.run_metadata.num_failures,
            "error": last_error_message(trial.get_error()) or last.get("error"),
        })
        if not history.empty:
            kept = [c for c in history.columns if not c.startswith(CONFIG_PREFIX) and c not in RAY_COLUMNS]
            evaluations.append(history[kept].assign(trial_id=trial.trial_id))
    trials = pd.DataFrame(rows)
    for key in dict.fromkeys(key for config in configs for key in config):
        trials[CONFIG_PREFIX + key] = config_column([config.get(key) for config in configs])
    if not trials.empty:
        trials = trials.sort_values("best_metric", ascending=spec.mode == "min", kind="stable")
        trials = trials.reset_index(drop=True)
    return ExperimentResults(trials, pd.concat(evaluations, ignore_index=True) if evaluations else pd.DataFrame())


def _checkpoint_on_storage(checkpoint: Any) -> tuple[str | None, str | None]:
    """(path, checksum) of a trial's best checkpoint (a ``tune.Checkpoint``), or (None, None) when there is none,
    it was deleted from storage or its metadata is damaged: such a checkpoint can be neither copied nor trusted.
    """
    if checkpoint is None:
        return None, None
    checksum = checkpoint_checksum(checkpoint.filesystem, checkpoint.path)
    if checksum is None:
        logger.warning("trial checkpoint %s is gone or damaged; the trial is recorded without one", checkpoint.path)
        return None, None
    return checkpoint.path, checksum


def checkpoint_checksum(filesystem: Any, path: str) -> str | None:
    """The checksum the metadata of the checkpoint at ``path`` (on a pyarrow filesystem) records for the whole
    checkpoint; None when there is no checkpoint there, or its metadata is damaged or was changed."""
    from models.checkpoint import META_FILE, parse_meta

    meta_path = f"{path}/{META_FILE}"
    try:
        with filesystem.open_input_stream(meta_path) as handle:
            return parse_meta(handle.read(), meta_path)["sha256"]
    except (FileNotFoundError, TextuneError):
        return None


def write_tables(results: ExperimentResults, trials_path: str, evaluations_path: str, filesystem: Any) -> None:
    """Write both tables as Parquet through a pyarrow filesystem."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    for frame, path in ((results.trials, trials_path), (results.evaluations, evaluations_path)):
        pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path, filesystem=filesystem)


def read_trials(experiment: Experiment) -> pd.DataFrame:
    """The per-trial table written at the end of the last run (or resume)."""
    return _read_table(experiment, RESULTS_FILE)


def read_evaluations(experiment: Experiment) -> pd.DataFrame:
    """The per-evaluation table written beside the per-trial one."""
    return _read_table(experiment, EVALUATIONS_FILE)


def _read_table(experiment: Experiment, name: str) -> pd.DataFrame:
    """A results table, refused in one paragraph naming the file when it is missing, damaged or not textune's."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    filesystem, path = experiment.filesystem()
    where = f"{experiment.root}/{name}"
    try:
        table = pq.read_table(f"{path}/{name}", filesystem=filesystem)
    except FileNotFoundError as exc:
        raise TextuneError(f"experiment {experiment.root} has no {name} yet (its run did not reach the end).",
                           f"Finish it with: textune resume {experiment.root}") from exc
    except (pa.ArrowException, OSError) as exc:
        raise TextuneError(f"{where} is damaged and cannot be read as Parquet ({exc}).",
                           rebuild_hint(experiment)) from exc
    wrong = [f"{column} ({'missing' if column not in table.schema.names else table.schema.field(column).type})"
             for column, kind in TABLE_COLUMNS[name].items()
             if column not in table.schema.names or not _is_kind(table.schema.field(column).type, kind)]
    if wrong and table.num_columns:  # a search without a single trial writes tables without columns
        raise TextuneError(f"{where} is not a textune {name} table: these columns are missing or of the wrong "
                           f"type: {', '.join(wrong)}.", rebuild_hint(experiment))
    return table.to_pandas()


def _is_kind(arrow_type: Any, kind: str) -> bool:
    import pyarrow as pa

    if pa.types.is_null(arrow_type):  # a column that is null in every row, e.g. no trial kept a checkpoint
        return True
    if kind == "number":
        return pa.types.is_integer(arrow_type) or pa.types.is_floating(arrow_type)
    return pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type)


def rebuild_hint(experiment: Experiment) -> str:
    """How to rebuild the files the end of a run writes (results.parquet, evaluations.parquet, best/)."""
    return (f"Rebuild it from Ray Tune's records with: textune resume {experiment.root} (it rewrites "
            f"{RESULTS_FILE}, {EVALUATIONS_FILE} and {BEST_DIR}/).")


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
    return {key[len(CONFIG_PREFIX):]: plain_value(value) for key, value in row.items() if key.startswith(CONFIG_PREFIX)}


def top_configs(experiment_dir: str, k: int, names: list[str]) -> list[dict[str, Any]]:
    """The configs of the ``k`` best trials of a previous experiment, restricted to ``names`` (warm start)."""
    trials = read_trials(open_experiment(experiment_dir))
    scored = trials[trials["best_metric"].map(math.isfinite)].head(k)
    configs = [{n: v for n, v in searched_config(row).items() if n in names} for _, row in scored.iterrows()]
    return [config for config in configs if set(config) == set(names)]


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint directory from an experiment directory (its best trial), a run or a checkpoint.

    An experiment's ``best/`` is used only when it is, by its checksum, the checkpoint results.parquet records
    for the best trial that kept one; else TextuneError names what differs.
    """
    from models.checkpoint import read_meta, resolve_checkpoint as resolve_run_checkpoint

    path = Path(path)
    if not (path / SPEC_FILE).is_file():
        return resolve_run_checkpoint(path)
    experiment = open_experiment(path)
    best = path / BEST_DIR
    if not best.is_dir():
        raise TextuneError(f"experiment {path} has no {BEST_DIR}/ checkpoint yet (no trial finished an "
                           "evaluation, or the run was interrupted).",
                           f"Finish it with: textune resume {path}")
    recorded = best_with_checkpoint(read_trials(experiment))
    if recorded is None:
        raise TextuneError(f"{experiment.root}/{RESULTS_FILE} records no checkpoint checksum for {BEST_DIR}/ (no "
                           "scored trial kept a checkpoint, or an older textune wrote it), so "
                           f"{best} cannot be verified.", rebuild_hint(experiment))
    actual = read_meta(best)["sha256"]  # the checkpoint's own checksum, which covers all of its files
    own = f"{experiment.root}/{Path(recorded['trial_dir']).name}/{Path(recorded['checkpoint']).name}"
    if actual != recorded["checkpoint_sha256"]:
        raise TextuneError(f"{best} is not the checkpoint of trial {recorded['trial_id']} that "
                           f"{RESULTS_FILE} records for it: its checksum is {actual[:12]}…, the results recorded "
                           f"{recorded['checkpoint_sha256'][:12]}… (it was replaced or changed after the run).",
                           f"Give the trial's own checkpoint instead ({own}), or copy it back over {best}.")
    return best


def restarts(evaluations: pd.DataFrame) -> pd.DataFrame:
    """A row per restart of a trial that its evaluations show, with the progress the restart gave up.

    Every report carries ``restored_from_tokens``: the tokens of the checkpoint its run started from (0 for a
    fresh start). A report starts a new run of its trial when that value changes or its tokens do not grow.
    Columns: ``trial_id``, ``reached_tokens`` (the most tokens reported before the restart),
    ``restored_from_tokens`` and ``tokens_redone`` (their difference: evaluated progress trained again). The
    interval in flight when the trial crashed, at most one evaluation interval, is lost on top and shows in no
    report.
    """
    rows = []
    if "restored_from_tokens" in evaluations:
        for trial_id, history in evaluations.groupby("trial_id", sort=False):
            reached = previous_from = None
            # Reports from before the column existed (an older experiment, resumed) count as fresh starts.
            for tokens, restored_from in zip(history["tokens"], history["restored_from_tokens"].fillna(0)):
                if reached is not None and (restored_from != previous_from or tokens <= reached):
                    rows.append({"trial_id": trial_id, "reached_tokens": int(reached),
                                 "restored_from_tokens": int(restored_from),
                                 "tokens_redone": int(reached - restored_from)})
                reached = tokens if reached is None else max(reached, tokens)
                previous_from = restored_from
    return pd.DataFrame(rows, columns=["trial_id", "reached_tokens", "restored_from_tokens", "tokens_redone"])


def last_error_message(error_log: str | None) -> str | None:
    """The message of the last failure in Ray's text error log of a trial (``error.txt``), or None.

    Each failure there is a ``Failure # N`` header and a traceback whose last line is the exception and its
    message. The text log is read, never Ray's pickled copy of the exception (unpickling would run code).
    """
    if not error_log:
        return None
    last_failure = error_log.rpartition("Failure # ")[2]
    lines = [line.strip() for line in last_failure.splitlines()[1:] if line.strip()]
    return lines[-1] if lines else None


def _best(history: pd.DataFrame, key: str, sign: float) -> float:
    """The best finite value of ``key`` over a trial's evaluations (sign 1: lowest); worst infinity if none."""
    scores = history[key].astype(float) if key in history else pd.Series(dtype=float)
    finite = scores[scores.map(math.isfinite)]
    return float(sign * (sign * finite).min()) if not finite.empty else math.inf * sign


def plain_value(value: Any) -> Any:
    """NumPy scalars from Parquet as Python numbers, a missing value as None (for YAML/JSON output and configs).

    Missing is pandas' ``<NA>`` or NaN: a config column of text keeps a null as NaN once read back, and no
    config value textune samples is NaN itself (bounds and choices are finite or null).
    """
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    return value.item() if hasattr(value, "item") else value
