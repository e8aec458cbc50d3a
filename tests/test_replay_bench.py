"""The smoke version of benchmarks/bench_search_sim.py: every strategy replayed on a synthetic table, no Ray."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO_ROOT

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def test_bench_search_sim_smoke_compares_every_strategy(tmp_path: Path) -> None:
    result = subprocess.run(
        # --seeds is honoured under --smoke (it used to be ignored for the smoke's 3).
        [sys.executable, "-m", "benchmarks.bench_search_sim", "--smoke", "--seeds", "2", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=240,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    document = json.loads((tmp_path / "search_sim_synthetic-smoke.json").read_text())
    assert [d["workers"] for d in document["results"]] == [1, 8]
    for results in document["results"]:
        assert [s["slug"] for s in results["strategies"]] == [
            "random-fifo",
            "grid-fifo",
            "random-asha-g1024-rf3",
            "hyperopt-fifo",
            "hyperopt-asha-g1024-rf3",
            "bohb-asha-g1024-rf3",
        ]
        for summary in results["strategies"]:
            assert summary["seeds"] == 2 and summary["extrapolated_share"] == 0.0
            regrets = [row["iqm"] for row in summary["regret_at_tokens"]]
            # Regret at growing token budgets never rises, and the full budget's is the final regret.
            assert all(a >= b for a, b in itertools.pairwise(regrets)), regrets
            assert regrets[-1] == pytest.approx(summary["regret"]["iqm"])
    assert (tmp_path / "replay-synthetic-smoke.png").read_bytes()[:4] == b"\x89PNG"
    assert "| hyperopt+asha (grace 1024, rf 3) | 8 |" in result.stdout
