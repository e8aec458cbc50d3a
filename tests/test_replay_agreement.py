"""Fidelity: a real one-worker hyperopt + ASHA search and its replay on its own curves make the same proposals
and the same stop decisions. This starts Ray once (a 6-trial search of a one-layer model, about a minute):
the one comparison the simulator cannot be trusted without."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from conftest import FINISHED_EXPERIMENT_SETTINGS, REPO_ROOT, run_textune
from tune_jobs.experiment import open_experiment
from tune_jobs.replay.lookup import CurveLookup
from tune_jobs.replay.simulator import simulate
from tune_jobs.replay.table import table_from_experiment

pytestmark = pytest.mark.timeout(400)

ONE_WORKER = ("num_samples=6", "max_concurrent_trials=1")


def outcomes(trials: pd.DataFrame) -> dict[tuple, tuple[str, int]]:
    """Each trial's configuration (floats to 10 digits) -> (status, tokens trained)."""
    columns = sorted(c for c in trials.columns if c.startswith("config/"))
    return {tuple(round(v, 10) if isinstance(v, float) else v for v in row[columns]): (row["status"], row["tokens"])
            for _, row in trials.iterrows()}


def test_a_one_worker_replay_repeats_the_real_search(tmp_path: Path) -> None:
    settings = [s for s in FINISHED_EXPERIMENT_SETTINGS if not s.startswith(("num_samples", "max_concurrent"))]
    overrides = [f"--set={s}" for s in (*settings, *ONE_WORKER, f"storage={tmp_path}")]
    result = run_textune("run", str(REPO_ROOT / "tune_jobs" / "configs" / "quickstart.yaml"), "--name", "real",
                         *overrides, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    experiment = open_experiment(tmp_path / "real")
    table = table_from_experiment(experiment)
    real = pd.read_parquet(tmp_path / "real" / "results.parquet")
    assert set(real["status"]) <= {"completed", "early_stopped"}, real["status"]  # a time-budget cut would differ

    replayed = simulate(table.spec, CurveLookup(table), workers=1, seed=table.spec.seed)
    # Same proposals and the same ASHA decisions: every replayed evaluation is one the real search recorded.
    assert outcomes(replayed.trials) == outcomes(real)
    assert replayed.extrapolated_share == 0.0
    assert replayed.trials["best_metric"].iloc[0] == pytest.approx(real["best_metric"].iloc[0])
