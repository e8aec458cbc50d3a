"""Shared test fixtures: the repo's shared data, an isolated cache and a CLI runner."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
SHAKESPEARE_SHA256 = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"


@pytest.fixture(scope="session")
def shakespeare_file() -> Path:
    """The tinyshakespeare text kept beside the checkout for tests (never copied into the project)."""
    path = SHARED_DATA / "tinyshakespeare.txt"
    assert path.is_file(), f"test data missing: {path}"
    return path


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own textune cache so tests never see each other's datasets."""
    cache = tmp_path_factory.mktemp("textune-cache")
    monkeypatch.setenv("TEXTUNE_CACHE_DIR", str(cache))
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    return cache


@pytest.fixture(scope="module")
def module_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One dataset cache for a whole test module, so its Ray driver prepares the corpus once."""
    cache = tmp_path_factory.mktemp("module-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TEXTUNE_CACHE_DIR", str(cache))
        patch.setenv("RAY_USAGE_STATS_ENABLED", "0")
        yield cache


@pytest.fixture
def shared_module_cache(module_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Overrides the per-test cache (``pytest.mark.usefixtures``): the test reads the module's prepared corpus."""
    monkeypatch.setenv("TEXTUNE_CACHE_DIR", str(module_cache))


def run_textune(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None,
                timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run the real ``textune`` CLI in a subprocess, as a user would."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "tune_jobs.cli.main", *args], capture_output=True, text=True,
                          env=full_env, cwd=cwd or REPO_ROOT, timeout=timeout)


# A real ASHA + HyperOpt search on the synthetic corpus, small enough that Ray's start-up dominates (about a
# minute on a busy 2-core machine): the quickstart spec with a tiny model and corpus, rungs at 1024, 2048,
# 4096 and 8192 tokens.
FINISHED_EXPERIMENT_SETTINGS = (
    "num_samples=8", "max_concurrent_trials=2", "data.synthetic.characters=60000",
    "model.n_layers=1", "model.block_size=32", "model.eval_max_blocks=4", "model.warmup_tokens=512",
    "budget.max_tokens=8192", "budget.eval_every_tokens=1024", "budget.time_budget_s=120",
    "scheduler.grace_period_tokens=1024", "scheduler.reduction_factor=2", "search.n_initial_points=4",
    # A control knob (docs/analysis.md): sampled and recorded like the others, never passed to the trainer.
    "space.ignored_knob={uniform: [0.0, 1.0]}",
)


@pytest.fixture(scope="session")
def finished_experiment(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished search run once per session through the real CLI; read it, never write into it.

    Tests that write (analysis/, report/) take ``experiment_copy`` instead.
    """
    storage = tmp_path_factory.mktemp("finished-storage")
    cache = tmp_path_factory.mktemp("finished-cache")
    overrides = [f"--set={setting}" for setting in (*FINISHED_EXPERIMENT_SETTINGS, f"storage={storage}")]
    result = run_textune("run", str(REPO_ROOT / "tune_jobs" / "configs" / "quickstart.yaml"), "--name", "finished",
                         *overrides, env={"TEXTUNE_CACHE_DIR": str(cache), "RAY_USAGE_STATS_ENABLED": "0"},
                         timeout=240)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    experiment = storage / "finished"
    assert (experiment / "results.parquet").is_file() and (experiment / "best").is_dir()
    return experiment


@pytest.fixture()
def experiment_copy(finished_experiment: Path, tmp_path: Path) -> Path:
    """A private copy of ``finished_experiment`` that a test may write into."""
    copy = tmp_path / finished_experiment.name
    shutil.copytree(finished_experiment, copy, symlinks=True)
    return copy


def assert_user_error(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    """A bad-input failure: exit 2, one paragraph on stderr naming what is wrong, no traceback."""
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    message = result.stderr.strip()
    assert message.startswith("error:") or message.startswith("Usage:"), message
    for fragment in fragments:
        assert fragment in message, (fragment, message)


def completed_trials(experiment: Path) -> dict[str, tuple[int, float]]:
    """Trial directory -> (evaluations recorded, final val_bpc), for trials whose last report says completed
    (read from Ray's result logs on storage, as a driver that stops now leaves them)."""
    done = {}
    for result_file in experiment.glob("trial_*/result.json"):
        lines = result_file.read_text().splitlines()
        last = json.loads(lines[-1]) if lines else {}
        if last.get("status") == "completed":
            done[result_file.parent.name] = (len(lines), last["val_bpc"])
    return done
