"""``textune confirm`` on a real finished search: the top configs re-trained over seeds x folds on a real Ray
(interrupted with Ctrl-C and continued by running the command again), the summary and its paired test, a rerun
that trains nothing, and every bad input refused before Ray starts."""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
import pytest

from conftest import REPO_ROOT, assert_user_error, completed_trials, run_textune
from tune_jobs.cli.main import main

# The session's finished_experiment may be created by this module (Ray start-up dominates on a busy machine).
pytestmark = pytest.mark.timeout(600)

TOP_K, SEEDS, FOLDS = 2, 2, 2
OPTIONS = ("--top-k", str(TOP_K), "--seeds", str(SEEDS), "--folds", str(FOLDS))


def copy_of(experiment: Path, parent: Path) -> Path:
    copy = parent / experiment.name
    shutil.copytree(experiment, copy, symlinks=True)
    return copy


class Confirmed(NamedTuple):
    experiment: Path
    result: subprocess.CompletedProcess[str]  # of the command that completed the confirmation
    interrupted_output: str  # of the first command, stopped with Ctrl-C
    # Runs the interrupted command saved as finished -> (reports, final val_bpc), as test_tune_resume counts them.
    finished_before: dict[str, tuple[int, float]]


def saved_as_finished(confirm_dir: Path) -> set[str]:
    """Run directories that Ray Tune's newest saved experiment state records as terminated: continuing restores
    those as they are. (A run whose end raced the interruption may have reported it without being saved as
    terminated; it may train its last interval again, docs/reliability.md.) Empty while the state is copied."""
    states = sorted(confirm_dir.glob("experiment_state-*.json"))  # the names sort by their start time
    try:
        trials = [json.loads(trial) for trial, _ in json.loads(states[-1].read_text())["trial_data"]] if states else []
    except json.JSONDecodeError:
        return set()
    return {f"trial_{trial['trial_id']}" for trial in trials if trial["status"] == "TERMINATED"}


@pytest.fixture(scope="module")
def confirmed(finished_experiment: Path, tmp_path_factory: pytest.TempPathFactory) -> Confirmed:
    """A copy of the finished search, confirmed through the real CLI (top-k 2, seeds 2, folds 2) the way an
    impatient user would: Ctrl-C once the first run has finished, then the same command again, which completes
    it. The interruption costs one more Ray start; the runs themselves are trained once."""
    experiment = copy_of(finished_experiment, tmp_path_factory.mktemp("confirmed"))
    cache = tmp_path_factory.mktemp("confirm-cache")  # module scope: the per-test isolated cache is not set yet
    env = {"TEXTUNE_CACHE_DIR": str(cache), "RAY_USAGE_STATS_ENABLED": "0"}
    log = tmp_path_factory.mktemp("interrupted") / "output.txt"  # a file: Ray Tune's tables could fill a pipe
    with log.open("w") as output:
        # A session of its own, so whatever the driver leaves behind can be stopped with it.
        driver = subprocess.Popen(
            [sys.executable, "-m", "tune_jobs.cli.main", "confirm", str(experiment), *OPTIONS],
            cwd=REPO_ROOT,
            env={**os.environ, **env},
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 300
        while not saved_as_finished(experiment / "confirm"):
            assert driver.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, "no confirmation run finished in time"
            time.sleep(0.2)
        driver.send_signal(signal.SIGINT)
        driver.wait(timeout=120)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(driver.pid, signal.SIGKILL)
        driver.wait()
    saved = saved_as_finished(experiment / "confirm")
    finished_before = {
        run: reports for run, reports in completed_trials(experiment / "confirm").items() if run in saved
    }
    result = run_textune("confirm", str(experiment), *OPTIONS, timeout=400, env=env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return Confirmed(experiment, result, log.read_text(), finished_before)


def run_states(experiment: Path) -> dict[str, int]:
    """Each confirmation run's directory -> reports recorded, plus Ray's experiment state files."""
    runs = {
        path.parent.name: len(path.read_text().splitlines())
        for path in (experiment / "confirm").glob("trial_*/result.json")
    }
    runs.update({path.name: 0 for path in (experiment / "confirm").glob("experiment_state-*.json")})
    return runs


def test_confirm_retrains_the_top_configs_over_seeds_and_folds(confirmed: Confirmed) -> None:
    experiment, result = confirmed.experiment, confirmed.result
    summary = json.loads((experiment / "analysis" / "confirm.json").read_text())
    search = pd.read_parquet(experiment / "results.parquet")
    top = search[search["best_metric"].map(math.isfinite)].head(TOP_K)
    assert [c["trial_id"] for c in summary["configs"]] == list(top["trial_id"])
    assert [c["rank"] for c in summary["configs"]] == [1, 2]
    assert summary["configs"][0]["config"] == {
        k.removeprefix("config/"): v for k, v in top.iloc[0].items() if k.startswith("config/")
    }
    assert (summary["metric"], summary["seeds"], summary["folds"], summary["max_tokens"]) == (
        "val_bpc",
        SEEDS,
        FOLDS,
        8192,
    )
    order = [(r["seed"], r["fold"]) for r in summary["replications"]]
    assert order == [(1, 0), (1, 1), (2, 0), (2, 1)]  # fresh seeds: the search trained with seed 0

    runs = pd.read_parquet(experiment / "confirm" / "results.parquet")
    assert len(runs) == TOP_K * SEEDS * FOLDS and (runs["status"] == "completed").all()
    assert (runs["tokens"] == 8192).all()  # the full budget, no early stopping
    for config in summary["configs"]:
        values = config["values"]
        assert len(values) == SEEDS * FOLDS and all(math.isfinite(v) for v in values)
        assert config["mean"] == pytest.approx(np.mean(values))
        assert config["std"] == pytest.approx(np.std(values, ddof=1))
        mine = runs[runs["config/lr"] == config["config"]["lr"]].sort_values(["config/seed", "config/fold"])
        assert list(mine["last_val_bpc"]) == pytest.approx(values)  # each value is its run's final val_bpc
    assert len(set(summary["configs"][0]["values"])) == SEEDS * FOLDS  # seeds and folds really differ

    test = summary["paired_test"]
    best, runner_up = sorted(summary["configs"], key=lambda c: c["mean"])
    assert (test["best"], test["runner_up"], test["n"]) == (best["trial_id"], runner_up["trial_id"], SEEDS * FOLDS)
    assert test["mean_diff"] == pytest.approx(np.mean(np.subtract(best["values"], runner_up["values"])))
    assert 0.0 <= test["p_value"] <= 1.0 and test["alpha"] == 0.05
    assert test["significant"] == (test["p_value"] < 0.05)
    assert "ttest_rel" in test["test"]
    assert "paired t-test" in result.stdout and best["trial_id"] in result.stdout


def test_an_interrupted_confirmation_continues_without_retraining_finished_runs(confirmed: Confirmed) -> None:
    planned = TOP_K * SEEDS * FOLDS
    assert 1 <= len(confirmed.finished_before) < planned, confirmed.interrupted_output[-3000:]
    # Stopped early, it summarised nothing and said how to continue.
    assert "confirmation run(s) unfinished" in confirmed.interrupted_output
    assert f"continue with: textune confirm {confirmed.experiment}" in confirmed.interrupted_output
    after = completed_trials(confirmed.experiment / "confirm")
    assert len(after) == planned
    # A finished run's reports are exactly those it had: it was not trained again.
    assert {name: after[name] for name in confirmed.finished_before} == confirmed.finished_before
    runs = pd.read_parquet(confirmed.experiment / "confirm" / "results.parquet")
    assert len(runs) == planned and runs["trial_id"].is_unique


def test_rerunning_a_finished_confirmation_trains_nothing(confirmed: Confirmed) -> None:
    experiment, first = confirmed.experiment, confirmed.result
    before = run_states(experiment)
    summary = (experiment / "analysis" / "confirm.json").read_text()
    again = run_textune("confirm", str(experiment), *OPTIONS, timeout=120)
    assert again.returncode == 0, again.stderr[-3000:]
    assert run_states(experiment) == before and len(before) > TOP_K * SEEDS * FOLDS
    assert (experiment / "analysis" / "confirm.json").read_text() == summary
    assert again.stdout.splitlines()[-4:] == first.stdout.splitlines()[-4:]  # the same table and verdict


def test_other_options_do_not_overwrite_a_confirmation(
    confirmed: Confirmed, capsys: pytest.CaptureFixture[str]
) -> None:
    experiment = confirmed.experiment
    before = run_states(experiment)
    assert_user_error(
        cli("confirm", str(experiment), "--top-k", "2", "--seeds", "3", capsys=capsys),
        "holds a confirmation run with other settings",
        "seeds 2, folds 2",
        "does not overwrite",
    )
    assert run_states(experiment) == before


def cli(*args: str, capsys: pytest.CaptureFixture[str]) -> subprocess.CompletedProcess[str]:
    """The real CLI entry point, in this process (the bad inputs stop before any heavy import or Ray)."""
    code = main(list(args))
    captured = capsys.readouterr()
    return subprocess.CompletedProcess(list(args), code, captured.out, captured.err)


@pytest.fixture(scope="module")
def untouched(finished_experiment: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the finished search that bad inputs must leave as it is."""
    return copy_of(finished_experiment, tmp_path_factory.mktemp("untouched"))


@pytest.mark.parametrize(
    "options, fragments",
    [
        (["--top-k", "99", "--seeds", "1"], ["--top-k 99", "distinct configs with a finite metric", "Give --top-k"]),
        (
            ["--top-k", "1", "--seeds", "1", "--folds", "2000"],
            ["--folds 2000", "too few for one block of block_size=32", "Use at most"],
        ),
        # Option bounds are checked as the command line is parsed, as in every command (issue 16, point 11).
        (["--top-k", "0", "--seeds", "1"], ["--top-k", "1<=x<=100"]),
        (["--top-k", "1", "--seeds", "0"], ["--seeds", "x>=1"]),
        (["--top-k", "1", "--seeds", "1", "--folds", "1"], ["--folds", "x>=2"]),
    ],
    ids=["top-k-above-trials", "fold-shorter-than-a-block", "top-k-0", "seeds-0", "folds-1"],
)
def test_bad_input_is_refused_before_anything_runs(
    untouched: Path, options: list[str], fragments: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert_user_error(cli("confirm", str(untouched), *options, capsys=capsys), *fragments)
    assert not (untouched / "confirm").exists() and not (untouched / "analysis").exists()


def test_a_missing_experiment_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    result = cli("confirm", str(tmp_path / "nope"), "--top-k", "1", "--seeds", "1", capsys=capsys)
    assert_user_error(result, f"{tmp_path / 'nope'} is not a textune experiment")
