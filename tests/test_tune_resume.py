"""Ctrl-C on a real ``textune run``, then ``textune resume``: the rest runs, finished trials are not re-run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from conftest import REPO_ROOT, assert_user_error, run_textune
from test_tune_spec import tiny_job

pytestmark = pytest.mark.timeout(300)

TRIALS = 6


def completed_trials(experiment: Path) -> dict[str, int]:
    """Trial directory -> evaluations recorded, for trials whose last report says completed."""
    done = {}
    for result_file in experiment.glob("trial_*/result.json"):
        lines = result_file.read_text().splitlines()
        if lines and json.loads(lines[-1]).get("status") == "completed":
            done[result_file.parent.name] = len(lines)
    return done


def test_interrupt_then_resume_finishes_the_rest(tmp_path: Path) -> None:
    job = tiny_job(tmp_path, name="interrupted", num_samples=TRIALS, max_concurrent_trials=1,
                   budget={"max_tokens": 4096, "eval_every_tokens": 1024})
    job_path = tmp_path / "job.yaml"
    job_path.write_text(yaml.safe_dump(job))
    experiment = tmp_path / "interrupted"

    driver = subprocess.Popen([sys.executable, "-m", "tune_jobs.cli.main", "run", str(job_path)], cwd=REPO_ROOT,
                              env=dict(os.environ), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 180
        while len(completed_trials(experiment)) < 2:
            assert driver.poll() is None, driver.stdout.read()
            assert time.monotonic() < deadline, "no trial finished in time"
            time.sleep(0.2)
        driver.send_signal(signal.SIGINT)
        output, _ = driver.communicate(timeout=120)
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait()
    finished_before = completed_trials(experiment)
    assert 2 <= len(finished_before) < TRIALS, output
    assert "textune resume" in output

    refused = run_textune("run", str(job_path))
    assert_user_error(refused, "already exists", f"textune resume {experiment}")

    resumed = run_textune("resume", str(experiment), timeout=240)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    trials = pd.read_parquet(experiment / "results.parquet")
    assert len(trials) == TRIALS and (trials["status"] == "completed").all(), trials[["trial_id", "status"]]
    after = completed_trials(experiment)
    assert {name: after[name] for name in finished_before} == finished_before, "a finished trial ran again"
    assert (experiment / "best" / "meta.json").is_file()
