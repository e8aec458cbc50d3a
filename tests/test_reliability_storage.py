"""Storage faults on a real search, then ``textune resume``: a disk that fills up mid-search, and trial
checkpoints deleted between an interrupt and the resume (docs/reliability.md).

Both start Ray twice (run, then resume) with trials of about a second: the promises are about Ray Tune's
snapshot and restore, which only a real search exercises. The disk is a real tmpfs mounted for the test (root
only, as under `make test`).
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from conftest import FINISHED_EXPERIMENT_SETTINGS, completed_trials, run_textune, run_until
from support.files import tmpfs
from support.jobs import QUICKSTART, tiny_job, write_job
from tune_jobs.results.restarts import restarts

pytestmark = [pytest.mark.slow, pytest.mark.timeout(420)]


def test_a_search_that_fills_the_disk_resumes_once_space_is_freed(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "disk", "2m") as disk:
        # The session's finished experiment with 4 trials: checkpoints of about 200 KB, 2 kept per trial, fill
        # 2 MB mid-search (the search of issue 14).
        settings = (*FINISHED_EXPERIMENT_SETTINGS, "num_samples=4", f"storage={disk}", "storage_options.min_free_gb=0")
        experiment = disk / "full"
        filled = run_textune("run", str(QUICKSTART), "--name", "full", *(f"--set={s}" for s in settings), timeout=240)
        assert "No space left on device" in filled.stdout + filled.stderr, filled.stdout[-2000:]
        # The snapshot the resume needs is whole: before the fix, these files ended at 0 bytes.
        for pattern in ("experiment_state-*.json", "searcher-state-*.pkl", "search_gen_state-*.json"):
            assert all(path.stat().st_size > 0 for path in experiment.glob(pattern)), pattern
        snapshot = json.loads(sorted(experiment.glob("experiment_state-*.json"))[-1].read_text())
        # The last whole snapshot's trial table; its searcher state is the same snapshot's (the files of one
        # snapshot are renamed together), so the resume runs the trials it knows and the rest the searcher owes.
        snapshot_ids = {json.loads(trial[0])["trial_id"] for trial in snapshot["trial_data"]}
        assert snapshot_ids, "the run's first snapshots, taken before the disk filled, hold its first trials"
        assert not list(experiment.rglob(".*.partial-*")), "a failed write left its staging file"
        if filled.returncode == 1:  # every trial failed on the full disk: the results are written, no best trial
            assert "no trial reported a finite metric" in filled.stdout, filled.stdout[-3000:]
        elif filled.returncode != 0:  # the end of the run could not write its results: one paragraph, last
            assert filled.returncode == 2, filled.stderr[-3000:]
            assert filled.stderr.strip().splitlines()[-1].startswith("error: the results of"), filled.stderr[-3000:]

        subprocess.run(["mount", "-o", "remount,size=64m", str(disk)], check=True)  # space is freed
        resumed = run_textune("resume", str(experiment), timeout=240)
        assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
        trials = pd.read_parquet(experiment / "results.parquet")
        # The full promise: every one of the 4 trials ends, none lost between the trial table and the searcher.
        assert len(trials) == 4 and snapshot_ids <= set(trials["trial_id"]), (
            snapshot_ids,
            trials[["trial_id", "status"]],
        )
        assert set(trials["status"]) <= {"completed", "early_stopped"}, trials[["trial_id", "status", "error"]]
        assert (trials["status"] == "completed").any()
        assert not list(experiment.rglob(".*.partial-*"))
        assert run_textune("generate", str(experiment), "--max-new-tokens", "5").returncode == 0


def test_deleted_checkpoints_restart_the_trial_and_best_stays_whole(tmp_path: Path) -> None:
    job = write_job(
        tmp_path / "job.yaml",
        tiny_job(
            # 48 evaluations of about 0.05 s each: the interrupt lands while the checkpointed trial still runs.
            tmp_path,
            name="pruned",
            num_samples=3,
            max_concurrent_trials=1,
            budget={"max_tokens": 49152, "eval_every_tokens": 1024},
        ),
    )
    experiment = tmp_path / "pruned"

    def unfinished_and_checkpointed(trial: Path, done: dict) -> bool:
        # A report on storage too: a trial uploads its checkpoint before the driver records the report, and a
        # trial whose reports all died with the interrupt would show no restart after the resume.
        result = trial / "result.json"
        return (
            trial.name not in done
            and bool(list(trial.glob("checkpoint_*")))
            and result.is_file()
            and bool(result.read_text().strip())
        )

    def one_done_and_one_checkpointed() -> bool:
        done = completed_trials(experiment)
        return len(done) >= 1 and any(unfinished_and_checkpointed(trial, done) for trial in experiment.glob("trial_*"))

    run_until(job, one_done_and_one_checkpointed, signal.SIGINT)
    done = completed_trials(experiment)
    pruned = [trial for trial in experiment.glob("trial_*") if unfinished_and_checkpointed(trial, done)]
    assert pruned
    for trial in pruned:  # every checkpoint of the interrupted trial is gone before the resume
        for checkpoint in trial.glob("checkpoint_*"):
            shutil.rmtree(checkpoint)

    resumed = run_textune("resume", str(experiment), timeout=240)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    trials = pd.read_parquet(experiment / "results.parquet")
    assert len(trials) == 3 and (trials["status"] == "completed").all(), trials[["trial_id", "status", "error"]]
    # The pruned trial started again from scratch: its evaluations after the resume report no restored checkpoint.
    evaluations = pd.read_parquet(experiment / "evaluations.parquet")
    pruned_ids = {trial.name.removeprefix("trial_") for trial in pruned}
    restarted = restarts(evaluations)
    restarted = restarted[restarted["trial_id"].isin(pruned_ids)]
    assert set(restarted["trial_id"]) == pruned_ids and (restarted["restored_from_tokens"] == 0).all(), restarted
    # best/ is the best trial's checkpoint, verified against the checksum results.parquet records.
    best = trials[trials["checkpoint_sha256"].notna()].iloc[0]
    assert json.loads((experiment / "best" / "meta.json").read_text())["sha256"] == best["checkpoint_sha256"]
    assert run_textune("generate", str(experiment), "--max-new-tokens", "5").returncode == 0


def test_the_end_of_a_run_copies_the_best_trial_whose_checkpoint_is_left(experiment_copy: Path) -> None:
    """Issue 13 C.9 without Ray: the best trial's checkpoints are gone, so best/ becomes the next trial's (the
    finish crashed with FileNotFoundError and left best/ empty)."""
    from tune_jobs.experiment import open_experiment
    from tune_jobs.finish import finish_experiment
    from tune_jobs.spec import load_saved_spec

    before = pd.read_parquet(experiment_copy / "results.parquet")
    for checkpoint in (experiment_copy / Path(before["trial_dir"].iloc[0]).name).glob("checkpoint_*"):
        shutil.rmtree(checkpoint)
    experiment = open_experiment(experiment_copy)
    trials = finish_experiment(experiment, load_saved_spec(experiment)).trials
    assert trials["trial_id"].iloc[0] == before["trial_id"].iloc[0] and pd.isna(trials["checkpoint"].iloc[0])
    assert trials["checkpoint_sha256"].iloc[1] == before["checkpoint_sha256"].iloc[1]
    assert json.loads((experiment_copy / "best" / "meta.json").read_text())["sha256"] == before["checkpoint_sha256"][1]
    assert sorted(p.name for p in experiment_copy.iterdir() if ".partial-" in p.name) == []
    assert run_textune("generate", str(experiment_copy), "--max-new-tokens", "5").returncode == 0
