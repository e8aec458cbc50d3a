"""What a search cost: training tokens, FLOPs and device-hours, per trial and per experiment.

A trial holds its devices for its whole wall time (training, evaluation and checkpointing alike), so its
device-hours are its wall time times the devices the spec gave it: GPUs when the trial asked for any
(``device_kind`` ``gpu``), else CPU cores (``cpu_core``). FLOPs are the trainer's cumulative training FLOPs
(6·N plus attention per token), so they count the tokens a trial actually trained on, early stop included, and
its ``cooldown_tokens``: the tokens of its annealed evaluations' cooldown branches (``lr_schedule: wsd``), which
cost compute but are not progress (``tokens``, ASHA's clock, leaves them out).
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from tune_jobs.spec import Resources

COST_COLUMNS = ("tokens", "cooldown_tokens", "flops", "wall_time_s", "device_kind", "device_hours")
UNIT_NAMES = {"gpu": "GPU-hours", "cpu_core": "CPU-core-hours"}


def device_kind(resources: Resources) -> str:
    """``gpu`` when trials hold GPUs, else ``cpu_core``: the unit of ``device_hours``."""
    return "gpu" if resources.gpu > 0 else "cpu_core"


def devices_per_trial(resources: Resources) -> float:
    """The devices of ``device_kind`` one trial holds."""
    return resources.gpu if resources.gpu > 0 else resources.cpu


def trial_cost(last_report: dict[str, Any], resources: Resources) -> dict[str, Any]:
    """A trial's cost columns from its last report (Ray's ``time_total_s`` is its wall time)."""
    wall_time_s = float(last_report.get("time_total_s", 0.0))
    return {
        "tokens": int(last_report.get("tokens", 0)),
        "cooldown_tokens": int(last_report.get("cooldown_tokens", 0)),
        "flops": float(last_report.get("flops", 0.0)),
        "wall_time_s": wall_time_s,
        "device_kind": device_kind(resources),
        "device_hours": wall_time_s * devices_per_trial(resources) / 3600.0,
    }


def experiment_cost(trials: pd.DataFrame) -> dict[str, Any]:
    """The sums over every trial of a results table (failed and early-stopped ones cost compute too)."""
    if trials.empty:
        return {
            "trials": 0,
            "tokens": 0,
            "cooldown_tokens": 0,
            "flops": 0.0,
            "wall_time_s": 0.0,
            "device_kind": None,
            "device_hours": 0.0,
        }
    return {
        "trials": len(trials),
        "tokens": int(trials["tokens"].sum()),
        # Absent from the tables of experiments run before annealed evaluations existed: none had any.
        "cooldown_tokens": int(trials["cooldown_tokens"].sum()) if "cooldown_tokens" in trials else 0,
        "flops": float(trials["flops"].sum()),
        "wall_time_s": float(trials["wall_time_s"].sum()),
        "device_kind": str(trials["device_kind"].iloc[0]),  # one spec, so one kind for every trial
        "device_hours": float(trials["device_hours"].sum()),
    }
