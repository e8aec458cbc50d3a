"""Trial status as an enum (models.status.TrialStatus): how a trial's final status is decided, and that every
file keeps writing the same plain strings as before the enum."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq
import pytest

from models.status import FINAL_STATUSES, TRAINER_FAILURES, TrialStatus
from textune import strict_json
from tune_jobs.experiment import EVALUATIONS_FILE, RESULTS_FILE, experiment_at
from tune_jobs.results.collect import trial_status
from tune_jobs.results.parquet import write_tables
from tune_jobs.results.table import ExperimentResults

MAX_TOKENS = 8192


@pytest.mark.parametrize(
    ("ray_status", "last", "expected"),
    [
        ("ERROR", {"status": "running", "tokens": 2048}, "errored"),  # crashed past max_failures
        ("TERMINATED", {"status": "errored", "tokens": 0}, "errored"),  # its config was refused by the trainer
        ("TERMINATED", {"status": "diverged", "tokens": 2048}, "diverged"),
        ("TERMINATED", {"status": "oom", "tokens": 4096}, "oom"),
        ("PAUSED", {"status": "running", "tokens": 2048}, "unfinished"),
        ("PENDING", {}, "unfinished"),
        ("TERMINATED", {"status": "completed", "tokens": MAX_TOKENS}, "completed"),
        ("TERMINATED", {"status": "running", "tokens": MAX_TOKENS}, "completed"),  # reached the budget
        ("TERMINATED", {"status": "running", "tokens": 2048}, "early_stopped"),  # ASHA stopped it at a rung
    ],
    ids=["error", "refused", "diverged", "oom", "paused", "pending", "completed", "budget", "early-stopped"],
)
def test_a_trial_gets_its_final_status_from_ray_and_its_last_report(
    ray_status: str, last: dict[str, Any], expected: str
) -> None:
    status = trial_status(ray_status, last, MAX_TOKENS)
    assert status is TrialStatus(expected)
    assert status == expected and status in FINAL_STATUSES


def test_the_statuses_are_the_strings_every_file_held_before() -> None:
    assert [status.value for status in FINAL_STATUSES] == [
        "completed",
        "early_stopped",
        "diverged",
        "oom",
        "errored",
        "unfinished",
    ]  # the HParams domain's order
    assert [status.value for status in TRAINER_FAILURES] == ["diverged", "oom"]
    assert TrialStatus.RUNNING not in FINAL_STATUSES
    report = {"status": TrialStatus.EARLY_STOPPED}
    assert json.loads(strict_json.dumps(report)) == {"status": "early_stopped"}
    assert f"[{TrialStatus.OOM}]" == "[oom]" and str(TrialStatus.DIVERGED) == "diverged"
    assert {TrialStatus.ERRORED: 1}["errored"] == 1  # a table's plain string finds an enum-keyed entry


def test_statuses_go_through_parquet_as_plain_strings(tmp_path: Path) -> None:
    experiment = experiment_at(str(tmp_path), "statuses")
    filesystem, root = experiment.filesystem()
    filesystem.create_dir(root)
    trials = pd.DataFrame({"trial_id": ["a", "b"], "status": [TrialStatus.COMPLETED, TrialStatus.EARLY_STOPPED]})
    evaluations = pd.DataFrame({"trial_id": ["a"], "tokens": [2048], "status": [TrialStatus.RUNNING]})
    write_tables(
        ExperimentResults(trials, evaluations), f"{root}/{RESULTS_FILE}", f"{root}/{EVALUATIONS_FILE}", filesystem
    )
    assert pq.read_table(f"{root}/{RESULTS_FILE}").column("status").to_pylist() == ["completed", "early_stopped"]
    assert pq.read_table(f"{root}/{EVALUATIONS_FILE}").column("status").to_pylist() == ["running"]
    read_back = pq.read_table(f"{root}/{RESULTS_FILE}").to_pandas()["status"]
    assert (read_back == TrialStatus.EARLY_STOPPED).tolist() == [False, True]
    assert read_back.isin([TrialStatus.COMPLETED]).tolist() == [True, False]
