"""An experiment's lifecycle: created by one run only, held while a driver runs it, gone when a run fails before
its first trial, resumed only with the spec it started with, and "nothing to resume" once every trial ended.

No test here starts Ray (the finished experiment some read is the session's, run once for many test files).
"""

from __future__ import annotations

import multiprocessing
import shutil
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from conftest import assert_user_error, run_textune
from support.files import snapshot
from support.jobs import tiny_job, write_job
from textune.errors import TextuneError
from tune_jobs.experiment import SPEC_FILE, experiment_at, open_experiment
from tune_jobs.lifecycle import LOCK_FILE, held_experiment, new_experiment

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

HELD = "is being run right now by another textune process"


def saved_experiment(storage: Path, **changes: Any) -> tuple[Path, Path]:
    """An experiment as a run that was stopped before its end leaves it (its saved spec, no results yet),
    and the job file it was started from."""
    job = tiny_job(storage, **changes)
    experiment = storage / job["name"]
    experiment.mkdir(parents=True)
    (experiment / SPEC_FILE).write_text(yaml.safe_dump(job), encoding="utf-8")
    return experiment, write_job(storage.parent / "job.yaml", job)


@pytest.mark.parametrize(
    "setting, fragment",
    [
        # The data source fails while the dataset is prepared, after the experiment was created.
        ("data.source={tmp}/nowhere.txt", "does not exist"),
        # No node of the embedded Ray could host a trial: found after the experiment was created, before Ray.
        ("resources.gpu=1", "the largest node has 0 GPU(s)"),
    ],
)
def test_a_run_that_fails_before_its_first_trial_leaves_nothing_behind(
    tmp_path: Path, setting: str, fragment: str
) -> None:
    storage = tmp_path / "new" / "storage"  # neither directory exists yet
    job_path = write_job(tmp_path / "job.yaml", tiny_job(storage))
    command = ("run", str(job_path), "--set", setting.format(tmp=tmp_path))
    assert_user_error(run_textune(*command, timeout=120), fragment)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["job.yaml"]  # not even the storage root
    # The name is free: the same run fails for the same reason again, not because the experiment "exists".
    assert_user_error(run_textune(*command, timeout=120), fragment)


def _create_and_hold(storage: str, start: Any, outcomes: Any) -> None:
    """One of several processes that try to create one experiment at the same moment."""
    experiment = experiment_at(storage, "contested")
    start.wait()
    try:
        with new_experiment(experiment, keep=lambda: True):
            outcomes.put("created")
            time.sleep(1.0)  # a live run holds it while the others try
    except TextuneError as exc:
        outcomes.put(exc.paragraph())


def test_of_runs_of_one_name_started_at_once_exactly_one_gets_the_experiment(tmp_path: Path) -> None:
    context = multiprocessing.get_context("spawn")
    start, outcomes = context.Barrier(4), context.Queue()
    workers = [
        context.Process(target=_create_and_hold, args=(str(tmp_path / "runs"), start, outcomes)) for _ in range(4)
    ]
    for worker in workers:
        worker.start()
    results = [outcomes.get(timeout=120) for _ in workers]
    for worker in workers:
        worker.join(timeout=60)
    assert results.count("created") == 1, results
    refusals = [result for result in results if result != "created"]
    experiment = tmp_path / "runs" / "contested"
    assert all(
        str(experiment) in refusal and (HELD in refusal or "already exists" in refusal) for refusal in refusals
    ), refusals
    assert sorted(path.name for path in experiment.iterdir()) == [LOCK_FILE]


def test_a_live_run_holds_its_experiment_against_run_and_resume(tmp_path: Path) -> None:
    experiment, job_path = saved_experiment(tmp_path / "storage")
    with held_experiment(open_experiment(experiment)):  # what a live `textune run` of it holds
        before = snapshot(experiment)
        for command in (("resume", str(experiment)), ("run", str(job_path), "--resume"), ("run", str(job_path))):
            result = run_textune(*command, timeout=120)
            assert_user_error(result, f"experiment {experiment} {HELD}", f"textune resume {experiment}")
        assert snapshot(experiment) == before
    # The lock goes with the process that held it: a lock file left behind holds nothing.
    with held_experiment(open_experiment(experiment)):
        pass


def test_run_resume_with_a_changed_spec_lists_every_key_that_differs(tmp_path: Path) -> None:
    experiment, job_path = saved_experiment(tmp_path / "storage")
    before = snapshot(experiment)
    changed = run_textune(
        "run", str(job_path), "--resume", "--set", "num_samples=5", "--set", "budget.max_tokens=8192", timeout=120
    )
    assert_user_error(
        changed,
        f"differs from the one {experiment} was started with",
        "budget.max_tokens (saved 9216, given 8192); num_samples (saved 2, given 5)",
        f"textune resume {experiment}",
        "--name NEW_NAME",
    )
    # An edited job file (a search space bound) the same way.
    edited = dict(yaml.safe_load(job_path.read_text()), space={"lr": {"loguniform": [1.0e-4, 3.0e-2]}})
    result = run_textune("run", str(write_job(tmp_path / "edited.yaml", edited)), "--resume", timeout=120)
    assert_user_error(result, "space.lr.loguniform (saved [0.001, 0.03], given [0.0001, 0.03])")
    assert snapshot(experiment) == before


def test_resume_of_a_finished_experiment_says_nothing_to_resume_without_starting_ray(
    experiment_copy: Path, tmp_path: Path
) -> None:
    saved = yaml.safe_load((experiment_copy / SPEC_FILE).read_text())
    job_path = write_job(tmp_path / "job.yaml", dict(saved, storage=str(experiment_copy.parent)))
    trials = len(pd.read_parquet(experiment_copy / "results.parquet"))
    before = snapshot(experiment_copy)
    for command in (("resume", str(experiment_copy)), ("run", str(job_path), "--resume")):
        started = time.monotonic()
        result = run_textune(*command, timeout=60)
        elapsed = time.monotonic() - started
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith(f"nothing to resume: the {trials} trials of {experiment_copy} ended ("), (
            result.stdout
        )
        assert f"textune best {experiment_copy}" in result.stdout and "Result logdir" not in result.stdout
        # One Python start-up without Ray Tune's import (about 3 s here) or Ray's start (tens of seconds).
        assert elapsed < 10, elapsed
    assert snapshot(experiment_copy) == before


def test_resume_of_an_interrupted_experiment_is_not_mistaken_for_a_finished_one(experiment_copy: Path) -> None:
    (experiment_copy / "results.parquet").unlink()  # a driver killed before its end writes none
    shutil.rmtree(experiment_copy / "best")
    with held_experiment(open_experiment(experiment_copy)):
        result = run_textune("resume", str(experiment_copy), timeout=120)
    assert_user_error(result, HELD)  # it went on to the resume itself


def test_best_prints_the_checkpoint_its_help_promises(finished_experiment: Path) -> None:
    result = run_textune("best", str(finished_experiment))
    assert result.returncode == 0, result.stderr
    checkpoint = next(line for line in result.stdout.splitlines() if line.strip().startswith("checkpoint: "))
    path = checkpoint.split("checkpoint: ", 1)[1].split(";")[0]
    assert Path(path).is_dir() and Path(path).parent.parent == finished_experiment, checkpoint
    assert f"copied to {finished_experiment}/best" in checkpoint
    assert "checkpoint" in run_textune("best", "--help").stdout
