"""Fidelity: a real one-worker search and its replay on its own curves make the same proposals and the same stop
decisions, for each kind of searcher and scheduler: hyperopt + ASHA (proposals learn from results), random +
ASHA (proposals from the seed alone, ASHA decides) and grid + FIFO (every trial to its budget). Each starts Ray
once for a search of a one-layer model of 4-6 trials (about a minute each): the one comparison the simulator
cannot be trusted without."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from conftest import FINISHED_EXPERIMENT_SETTINGS, REPO_ROOT, run_textune
from tune_jobs.experiment import open_experiment
from tune_jobs.replay.lookup import CurveLookup
from tune_jobs.replay.simulator import simulate
from tune_jobs.replay.table import table_from_experiment

pytestmark = [pytest.mark.slow, pytest.mark.timeout(400)]

ONE_WORKER = ("num_samples=6", "max_concurrent_trials=1")
# Each strategy's settings over the session experiment's (grace 1024 tokens, reduction factor 2, 8 evaluations).
STRATEGIES = {
    "hyperopt+asha": (),
    "random+asha": ("search.algorithm=random",),
    # A 4-point grid, every dimension a grid (the sampled control knob too), run once.
    "grid+fifo": (
        "search.algorithm=grid",
        "scheduler.kind=fifo",
        "num_samples=1",
        "space.lr={grid: [4.0e-3, 1.6e-2]}",
        "space.batch_size={grid: [8, 16]}",
        "space.n_heads={grid: [2]}",
        "space.head_dim={grid: [16]}",
        "space.ignored_knob={grid: [0.5]}",
    ),
}


def outcomes(trials: pd.DataFrame) -> dict[tuple, tuple[str, int]]:
    """Each trial's configuration (floats to 10 digits) -> (status, tokens trained)."""
    columns = sorted(c for c in trials.columns if c.startswith("config/"))
    return {
        tuple(round(v, 10) if isinstance(v, float) else v for v in row[columns]): (row["status"], row["tokens"])
        for _, row in trials.iterrows()
    }


@pytest.mark.parametrize("strategy", list(STRATEGIES))
def test_a_one_worker_replay_repeats_the_real_search(strategy: str, tmp_path: Path) -> None:
    settings = [s for s in FINISHED_EXPERIMENT_SETTINGS if not s.startswith(("num_samples", "max_concurrent"))]
    overrides = [f"--set={s}" for s in (*settings, *ONE_WORKER, *STRATEGIES[strategy], f"storage={tmp_path}")]
    result = run_textune(
        "run", str(REPO_ROOT / "tune_jobs" / "configs" / "quickstart.yaml"), "--name", "real", *overrides, timeout=300
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    experiment = open_experiment(tmp_path / "real")
    table = table_from_experiment(experiment)
    real = pd.read_parquet(tmp_path / "real" / "results.parquet")
    assert set(real["status"]) <= {"completed", "early_stopped"}, real["status"]  # a time-budget cut would differ
    if strategy.endswith("+asha"):
        assert (real["status"] == "early_stopped").any(), real  # else there were no stop decisions to compare
    else:
        assert len(real) == 4 and set(real["status"]) == {"completed"}, real

    replayed = simulate(table.spec, CurveLookup(table), workers=1, seed=table.spec.seed)
    # Same proposals and the same ASHA decisions: every replayed evaluation is one the real search recorded.
    assert outcomes(replayed.trials) == outcomes(real)
    assert replayed.extrapolated_share == 0.0
    assert replayed.trials["best_metric"].iloc[0] == pytest.approx(real["best_metric"].iloc[0])
