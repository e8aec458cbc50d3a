"""benchmarks/bench_default_search.py: the promotion-type ASHA it replays, and its smoke run. No Ray."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.bench_default_search import CANDIDATE, GOALS, promotion_search
from benchmarks.bench_search_sim import synthetic_table
from conftest import REPO_ROOT
from tune_jobs.replay.lookup import CurveLookup
from tune_jobs.replay.simulator import simulate
from tune_jobs.replay.strategies import Strategy, strategy_spec

TRIALS = 24


@pytest.fixture(scope="module")
def table_and_lookup():
    table = synthetic_table()
    return table, CurveLookup(table)


def configs(trials) -> list[tuple]:
    columns = sorted(c for c in trials.columns if c.startswith("config/"))
    return sorted(map(tuple, trials[columns].astype(str).to_numpy().tolist()))


@pytest.mark.parametrize("workers", [1, 8])
def test_promotion_proposes_what_stopping_asha_proposes_and_trains_rung_to_rung(table_and_lookup, workers) -> None:
    """Seed k of promotion and of the simulator's stopping random+asha replays the same configurations (paired);
    a paused trial resumes where it stopped, so each trial trains exactly to one of the rungs or the budget, and
    the search's tokens are the sum of what its trials trained."""
    table, lookup = table_and_lookup
    spec = strategy_spec(table, Strategy("random", "asha", 1024, 3.0), 5, TRIALS)
    promoted = promotion_search(spec, lookup, workers, 5, TRIALS)
    stopped = simulate(spec, lookup, workers, 5, max_trials=TRIALS)
    assert len(promoted.trials) == TRIALS and configs(promoted.trials) == configs(stopped.trials)
    assert set(promoted.trials["tokens"]) <= {1024, 3072, 8192} and (promoted.trials["tokens"] == 8192).any()
    assert promoted.progress["tokens"].iloc[-1] == promoted.trials["tokens"].sum()
    # A search ends when no rung holds a promotable trial: the top int(24 / 3) = 8 at the first rung were all
    # promoted (others may have been too, while the rung held fewer), and most trials were not.
    columns = [c for c in promoted.trials.columns if c.startswith("config/")]
    at_rung = [
        lookup.evaluation({c.removeprefix("config/"): row[c] for c in columns}, 1024, 5).metric
        for _, row in promoted.trials.iterrows()
    ]
    top = promoted.trials.assign(at_rung=at_rung).nsmallest(TRIALS // 3, "at_rung")
    assert (top["tokens"] > 1024).all()
    assert (promoted.trials["tokens"] > 1024).sum() < TRIALS // 2


def test_no_trial_is_promoted_while_no_rung_holds_a_factors_worth(table_and_lookup) -> None:
    """A reduction factor above the trial count: int(n / factor) is 0 at every rung, so every trial pauses at the
    first rung for good, trained 1024 tokens each."""
    table, lookup = table_and_lookup
    spec = strategy_spec(table, Strategy("random", "asha", 1024, 30.0), 0, TRIALS)
    promoted = promotion_search(spec, lookup, 8, 0, TRIALS)
    assert (promoted.trials["tokens"] == 1024).all()
    assert promoted.progress["tokens"].iloc[-1] == TRIALS * 1024


@pytest.mark.timeout(240)
@pytest.mark.slow
def test_smoke_run_reports_ratios_regret_promotion_and_rank_agreement(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_default_search", "--smoke", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=230,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    record = json.loads((tmp_path / "default_search_synthetic-smoke.json").read_text())
    (result,) = record["results"]
    assert set(result["tokens_to_2pct"]) == {CANDIDATE, *GOALS}
    assert set(result["ratios"]) == set(GOALS) and all(r["goal"] == GOALS[n] for n, r in result["ratios"].items())
    assert [row["budget_trials"] for row in result["regret"]] == [1, 2, 4, 8, 16, 32, 64, 100]
    assert result["promotion"]["stopping_over_promotion"]["goal"] == 1.2
    assert [row["rung"] for row in record["rank_agreement"]] == [1024.0, 3072.0]
    assert all(-1 <= row["tau"] <= 1 for row in record["rank_agreement"])
    assert "Promotion vs stopping ASHA" in done.stdout
