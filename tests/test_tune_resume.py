"""Driver loss on a real ``textune run`` (Ctrl-C, or SIGKILL), then ``textune resume``: the rest runs, finished
trials are not re-run, no trial runs twice and HyperOpt's history comes back."""

from __future__ import annotations

import math
import signal
from pathlib import Path

import pandas as pd
import pytest
import yaml

from conftest import assert_user_error, completed_trials, run_textune, run_until
from support.jobs import tiny_job, write_job
from tune_jobs.search import build_search_alg
from tune_jobs.spec import JobSpec

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

TRIALS = 4


def searcher_losses(spec: JobSpec, experiment: Path) -> list[float]:
    """The results HyperOpt knows, read back from the searcher state saved in the experiment."""
    search_alg = build_search_alg(spec, [], max_concurrent=1)
    search_alg.restore_from_dir(str(experiment))
    history = search_alg.searcher.get_state()["hyperopt_trials"]
    return [trial["result"]["loss"] for trial in history.trials if trial["result"].get("status") == "ok"]


# Each way to lose the driver is continued with one of the two ways to resume.
@pytest.mark.parametrize(
    "stop_signal, resume_command",
    [
        (signal.SIGINT, ["resume", "{experiment}"]),
        (signal.SIGKILL, ["run", "{job}", "--resume"]),
    ],
    ids=["sigint", "sigkill"],
)
def test_driver_loss_then_resume_finishes_the_rest(
    tmp_path: Path, stop_signal: signal.Signals, resume_command: list[str]
) -> None:
    # 8 evaluations a trial: with 4, an idle machine ran the whole search in 3 s, and the kill found it finished.
    job = tiny_job(
        tmp_path,
        name="interrupted",
        num_samples=TRIALS,
        max_concurrent_trials=1,
        search={"algorithm": "hyperopt", "n_initial_points": 2},
        budget={"max_tokens": 8192, "eval_every_tokens": 1024},
    )
    job_path = tmp_path / "job.yaml"
    job_path.write_text(yaml.safe_dump(job))
    experiment = tmp_path / "interrupted"

    # The experiment's records on storage: what a driver that dies now leaves behind.
    output = run_until(job_path, lambda: len(completed_trials(experiment)) >= 2, stop_signal)
    finished_before = completed_trials(experiment)
    assert 2 <= len(finished_before) < TRIALS, output
    if stop_signal == signal.SIGINT:
        assert "textune resume" in output
        assert "Tuner.restore" not in output  # Ray Tune's own hint, for its Python API, is not shown

    # HyperOpt's saved history holds finished trials' results (those the last snapshot saw end; a trial whose
    # end came after it reaches the searcher when the resume restores it).
    spec = JobSpec.model_validate(job)
    saved_losses = searcher_losses(spec, experiment)
    finished_bpc = [val_bpc for _, val_bpc in finished_before.values()]
    assert saved_losses and all(any(math.isclose(loss, bpc) for bpc in finished_bpc) for loss in saved_losses)

    refused = run_textune("run", str(job_path))
    assert_user_error(refused, "already exists", f"textune resume {experiment}")

    resumed = run_textune(*(arg.format(experiment=experiment, job=job_path) for arg in resume_command), timeout=240)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    trials = pd.read_parquet(experiment / "results.parquet")
    assert len(trials) == TRIALS and (trials["status"] == "completed").all(), trials[["trial_id", "status"]]
    assert trials["trial_id"].is_unique
    evaluations = pd.read_parquet(experiment / "evaluations.parquet")
    # A trial whose report raced the driver's end goes back to the checkpoint the last snapshot knew and trains
    # that interval again (docs/reliability.md): at most one evaluation of one trial is recorded twice. That
    # report may have been the trial's last (recorded, its end not yet in Ray's snapshot); exact resume then
    # gives the same final result. Every other finished trial is untouched.
    repeated = evaluations[evaluations.duplicated(["trial_id", "tokens"])]
    assert len(repeated) <= 1, repeated[["trial_id", "tokens"]]
    repeated_dirs = {f"trial_{trial_id}" for trial_id in repeated["trial_id"]}
    after = completed_trials(experiment)
    changed = {name for name in finished_before if after[name] != finished_before[name]}
    assert changed <= repeated_dirs, f"a finished trial ran again: {changed}"
    assert all(math.isclose(after[name][1], finished_before[name][1]) for name in finished_before)
    losses = searcher_losses(spec, experiment)
    assert len(losses) == TRIALS and all(any(math.isclose(loss, bpc) for loss in losses) for bpc in finished_bpc)
    assert (experiment / "best" / "meta.json").is_file()


# Learning rates in the order the search runs them: three that learn, then three too small to learn much in
# the budget, which ASHA stops at the first rung when it remembers the first three.
ASHA_POINTS = [0.03, 0.02, 0.01, 1.0e-4, 2.0e-4, 3.0e-4]


def stop_decisions(experiment: Path) -> dict[float, tuple[str, int]]:
    """Each trial's learning rate -> (status, tokens trained): where ASHA stopped it (trial ids differ per run)."""
    trials = pd.read_parquet(experiment / "results.parquet")
    return {float(row["config/lr"]): (row["status"], int(row["tokens"])) for _, row in trials.iterrows()}


def test_asha_makes_the_same_stop_decisions_after_a_resume(tmp_path: Path) -> None:
    # One slot and fixed points make the search deterministic: the same trials reach the same rungs in the same
    # order with the same metrics, so only ASHA's memory of earlier trials can change a decision.
    job = tiny_job(
        tmp_path,
        num_samples=len(ASHA_POINTS),
        max_concurrent_trials=1,
        space={"lr": {"loguniform": [min(ASHA_POINTS), max(ASHA_POINTS)]}},
        search={"algorithm": "random", "points_to_evaluate": [{"lr": lr} for lr in ASHA_POINTS]},
        scheduler={"kind": "asha", "grace_period_tokens": 4096, "reduction_factor": 2},
        budget={"max_tokens": 32768, "eval_every_tokens": 4096},
    )
    uninterrupted_path = write_job(tmp_path / "uninterrupted.yaml", dict(job, name="uninterrupted"))
    uninterrupted = run_textune("run", str(uninterrupted_path), timeout=240)
    assert uninterrupted.returncode == 0, uninterrupted.stdout[-3000:] + uninterrupted.stderr[-3000:]
    expected = stop_decisions(tmp_path / "uninterrupted")
    assert sorted(expected) == sorted(ASHA_POINTS)
    assert any(status == "early_stopped" for status, _ in expected.values()), expected
    # The progress table names the experiment, not Ray's staging directory under /tmp/ray.
    logdirs = {line for line in uninterrupted.stdout.splitlines() if line.startswith("Result logdir: ")}
    assert logdirs == {f"Result logdir: {tmp_path / 'uninterrupted'}"}, logdirs

    # Ctrl-C once the third trial has reported: two have ended, and the rest, the third's later rungs and every
    # trial that ASHA stops in the uninterrupted search, run after the resume.
    experiment = tmp_path / "interrupted"
    interrupted_path = write_job(tmp_path / "interrupted.yaml", dict(job, name="interrupted"))
    reported = lambda: sum(1 for f in experiment.glob("trial_*/result.json") if f.stat().st_size) >= 3  # noqa: E731
    output = run_until(interrupted_path, reported, signal.SIGINT)
    assert "textune resume" in output
    before_resume = pd.read_parquet(experiment / "results.parquet")
    assert (before_resume["status"] == "unfinished").any() or len(before_resume) < len(ASHA_POINTS)

    resumed = run_textune("resume", str(experiment), timeout=240)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert stop_decisions(experiment) == expected
