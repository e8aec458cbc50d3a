"""Ray Tune's records -> the results tables (:mod:`tune_jobs.results.table`).

Read from Ray Tune's own records (``ExperimentAnalysis``), so they work for finished, interrupted and
resumed experiments alike. Each trial gets one final status (models.status.TrialStatus): ``errored`` when Ray
says so or the trainer refused its config, ``diverged``/``oom`` when the trainer reported it, ``unfinished``
when Ray had not ended it, else ``completed`` when it trained its whole budget and ``early_stopped`` when not.

Every trial also records ``failures`` (how often it crashed and was restarted, by an exception or a lost
node) and ``error``: the message of its last crash (for an ``errored`` trial, why it ended), else empty.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import pandas as pd

from models.status import TRAINER_FAILURES, TrialStatus
from tune_jobs.cost import trial_cost
from tune_jobs.experiment import Experiment
from tune_jobs.results.checkpoints import checkpoint_checksum
from tune_jobs.results.ray_errors import last_error_message
from tune_jobs.results.table import CONFIG_PREFIX, ExperimentResults, config_column
from tune_jobs.spec import JobSpec

logger = logging.getLogger(__name__)

# Reported by every trial so the results record where it ran (node, GPUs Ray assigned).
PLACEMENT_KEYS = ("node_id", "gpu_ids")
# Ray's bookkeeping columns that say nothing about the model.
RAY_COLUMNS = (
    "done",
    "training_iteration",
    "date",
    "pid",
    "hostname",
    "node_ip",
    "time_since_restore",
    "iterations_since_restore",
    "checkpoint_dir_name",
    "should_checkpoint",
    "time_this_iter_s",
)


def trial_status(ray_status: str, last: dict[str, Any], max_tokens: int) -> TrialStatus:
    """A final status from Ray's trial status and the trainer's last report."""
    reported = last.get("status")
    # A trial whose config the trainer refused reports "errored" itself and ends (tune_jobs.trainable).
    if ray_status == "ERROR" or reported == TrialStatus.ERRORED:
        return TrialStatus.ERRORED
    if reported in TRAINER_FAILURES:
        return TrialStatus(reported)
    if ray_status != "TERMINATED":
        return TrialStatus.UNFINISHED
    if reported == TrialStatus.COMPLETED or last.get("tokens", 0) >= max_tokens:
        return TrialStatus.COMPLETED
    return TrialStatus.EARLY_STOPPED


def collect(experiment: Experiment, spec: JobSpec) -> ExperimentResults:
    """Read every trial and evaluation of ``experiment`` from Ray Tune's records."""
    from ray.tune import ExperimentAnalysis

    from tune_jobs.ray_state import check_ray_state

    check_ray_state(experiment)
    filesystem, path = experiment.filesystem()
    analysis = ExperimentAnalysis(
        path, storage_filesystem=filesystem, default_metric=spec.metric, default_mode=spec.mode
    )
    sign = 1.0 if spec.mode == "min" else -1.0
    rows, configs, evaluations = [], [], []
    for trial in analysis.trials:
        history = analysis.trial_dataframes.get(trial.trial_id, pd.DataFrame())
        last = trial.last_result or {}
        best_metric = _best(history, spec.metric, sign)
        checkpoint, checkpoint_sha256 = _checkpoint_on_storage(
            analysis.get_best_checkpoint(trial) if math.isfinite(best_metric) else None
        )
        configs.append(trial.config)
        rows.append(
            {
                "trial_id": trial.trial_id,
                "status": trial_status(trial.status, last, spec.budget.max_tokens).value,
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
                # Trial.get_error is annotated as returning a TuneError, but returns error.txt's text (Ray 2.60).
                "error": last_error_message(trial.get_error()) or last.get("error"),  # type: ignore[arg-type]
            }
        )
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


def _best(history: pd.DataFrame, key: str, sign: float) -> float:
    """The best finite value of ``key`` over a trial's evaluations (sign 1: lowest); worst infinity if none."""
    scores = history[key].astype(float) if key in history else pd.Series(dtype=float)
    finite = scores[scores.map(math.isfinite)]
    return float(sign * (sign * finite).min()) if not finite.empty else math.inf * sign
