"""The exit status of ``textune run`` and ``resume`` tells a script whether the search found anything: 1 when no
trial reported a finite metric (every trial errored, say), after the results are written and the summary printed.

Starts Ray once, for one trial of a tiny model: the status is only decided at the end of a real run.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from conftest import run_textune
from support.jobs import tiny_job, write_job
from tune_jobs.experiment import RESULTS_FILE

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def test_a_run_whose_every_trial_errored_exits_1_after_writing_its_results(tmp_path: Path) -> None:
    base = tiny_job(tmp_path)
    # One trial that raises before its first evaluation on every attempt, and no retries: no finite metric.
    job = tiny_job(
        tmp_path,
        name="all-errored",
        num_samples=1,
        max_concurrent_trials=1,
        max_failures=0,
        model={**base["model"], "fault_at_tokens": 512, "fault_every_attempt": True},
        budget={"max_tokens": 2048, "eval_every_tokens": 1024},
    )
    experiment = tmp_path / "all-errored"
    for command in (("run", str(write_job(tmp_path / "job.yaml", job))), ("resume", str(experiment))):
        result = run_textune(*command, timeout=240)
        assert result.returncode == 1, (command, result.stdout[-3000:], result.stderr[-3000:])
        assert "trials: 1 errored" in result.stdout, result.stdout[-3000:]
        assert "no trial reported a finite metric, so there is no best trial." in result.stdout
        assert f"results: {experiment}/results.parquet" in result.stdout
        assert list(pd.read_parquet(experiment / RESULTS_FILE)["status"]) == ["errored"]
