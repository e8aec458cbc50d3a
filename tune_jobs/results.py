"""An experiment's results as tables: a row per trial and a row per evaluation.

Read from Ray Tune's own records (``ExperimentAnalysis``), so they work for finished, interrupted and
resumed experiments alike. Each trial gets one status:

``completed``      trained its whole budget
``early_stopped``  stopped by the scheduler (ASHA) at a rung
``diverged``/``oom`` reported by the trainer (its metric is inf; the search went on)
``errored``        raised an exception (after ``max_failures`` retries)
``unfinished``     pending, running or paused when the driver stopped; ``textune resume`` continues it

Every trial also records ``failures`` (how often it crashed and was restarted, by an exception or a lost
node) and ``error``: the message of its last crash (for an ``errored`` trial, why it ended), else empty.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from textune.errors import TextuneError
from tune_jobs.cost import trial_cost
from tune_jobs.experiment import BEST_DIR, EVALUATIONS_FILE, RESULTS_FILE, SPEC_FILE, Experiment, open_experiment
from tune_jobs.spec import JobSpec

CONFIG_PREFIX = "config/"
# Reported by every trial so the results record where it ran (node, GPUs Ray assigned).
PLACEMENT_KEYS = ("node_id", "gpu_ids")
TRAINER_FAILURES = ("diverged", "oom")
STATUSES = ("completed", "early_stopped", *TRAINER_FAILURES, "errored", "unfinished")
# Ray's bookkeeping columns that say nothing about the model.
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
    if ray_status == "ERROR":
        return "errored"
    reported = last.get("status")
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

    filesystem, path = experiment.filesystem()
    analysis = ExperimentAnalysis(path, storage_filesystem=filesystem, default_metric=spec.metric,
                                  default_mode=spec.mode)
    sign = 1.0 if spec.mode == "min" else -1.0
    rows, evaluations = [], []
    for trial in analysis.trials:
        history = analysis.trial_dataframes.get(trial.trial_id, pd.DataFrame())
        last = trial.last_result or {}
        best_metric = _best(history, spec.metric, sign)
        checkpoint = analysis.get_best_checkpoint(trial) if math.isfinite(best_metric) else None
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
            "checkpoint": checkpoint.path if checkpoint else None,
            "trial_dir": trial.path,
            **{key: last.get(key) for key in PLACEMENT_KEYS},
            "failures": trial.run_metadata.num_failures,
            "error": last_error_message(trial.get_error()),
        })
        if not history.empty:
            kept = [c for c in history.columns if not c.startswith(CONFIG_PREFIX) and c not in RAY_COLUMNS]
            evaluations.append(history[kept].assign(trial_id=trial.trial_id))
    trials = pd.DataFrame(rows)
    if not trials.empty:
        trials = trials.sort_values("best_metric", ascending=spec.mode == "min", kind="stable")
        trials = trials.reset_index(drop=True)
    return ExperimentResults(trials, pd.concat(evaluations, ignore_index=True) if evaluations else pd.DataFrame())


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
    import pyarrow.parquet as pq

    filesystem, path = experiment.filesystem()
    try:
        return pq.read_table(f"{path}/{name}", filesystem=filesystem).to_pandas()
    except FileNotFoundError as exc:
        raise TextuneError(f"experiment {experiment.root} has no {name} yet (its run did not reach the end).",
                           f"Finish it with: textune resume {experiment.root}") from exc


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
    """A checkpoint directory from an experiment directory (its best trial), a run or a checkpoint."""
    from models.checkpoint import resolve_checkpoint as resolve_run_checkpoint

    path = Path(path)
    if (path / SPEC_FILE).is_file():
        best = path / BEST_DIR
        if not best.is_dir():
            raise TextuneError(f"experiment {path} has no {BEST_DIR}/ checkpoint yet (no trial finished an "
                               "evaluation, or the run was interrupted).",
                               f"Finish it with: textune resume {path}")
        return best
    return resolve_run_checkpoint(path)


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
    """NumPy scalars from Parquet as Python numbers (for YAML/JSON output and configs)."""
    return value.item() if hasattr(value, "item") else value
