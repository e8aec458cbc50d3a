"""``budget.time_budget_s``: the search stops at the deadline and its running trials stay resumable.

The run goes through the real CLI entry point in this process, on a Ray session the module starts, so the
test pays for Ray's start once and the search is limited by the budget alone (its trials could run for hours).
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import pandas as pd
import pytest

from support.jobs import tiny_job, write_job
from tune_jobs.cli.main import main
from tune_jobs.experiment import RESULTS_FILE

pytestmark = pytest.mark.timeout(180)

BUDGET_S = 8.0


def test_time_budget_stops_the_search_and_leaves_its_trials_resumable(
    ray_session: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Trials of 10^8 tokens would train for hours: only the budget can end this search.
    job = tiny_job(
        tmp_path,
        name="budgeted",
        num_samples=3,
        max_concurrent_trials=1,
        budget={"max_tokens": 10**8, "eval_every_tokens": 1024, "time_budget_s": BUDGET_S},
    )
    started = time.monotonic()
    exit_code = main(["run", str(write_job(tmp_path / "job.yaml", job))])
    elapsed = time.monotonic() - started
    output = capsys.readouterr().out

    experiment = tmp_path / "budgeted"
    assert elapsed < BUDGET_S + 90, f"the search ran {elapsed:.0f} s with a {BUDGET_S:g} s budget"
    trials = pd.read_parquet(experiment / RESULTS_FILE)
    # Exit 1 only where no trial reached an evaluation before the deadline: no finite metric, no best trial.
    assert exit_code == (0 if trials["best_metric"].map(math.isfinite).any() else 1), output[-3000:]
    # The trial running at the deadline was interrupted, not finished: textune resume continues it.
    assert len(trials) >= 1 and (trials["status"] == "unfinished").all(), trials[["trial_id", "status", "tokens"]]
    assert (trials["tokens"] < 10**8).all()
    left = (
        "3 trial(s) unfinished"
        if len(trials) == 3
        else (f"3 trial(s) left to run ({len(trials)} unfinished, {3 - len(trials)} not started yet)")
    )
    assert f"{left}; continue with: textune resume {experiment}" in output, output[-3000:]
