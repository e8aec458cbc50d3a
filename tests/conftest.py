"""Shared test fixtures: real or generated text, an isolated cache and a CLI runner."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

from data_pipeline.config import SyntheticConfig
from data_pipeline.synthetic import MarkovSource

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
# The most any test reads (the tokenizer tests: 300,000 characters); 500 words give BPE merges to spare.
GENERATED_TEXT = SyntheticConfig(characters=300_000, words=500, branching=16)


@pytest.fixture(scope="session")
def shakespeare_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Text for tests that need a real corpus: tinyshakespeare from ``../shared/data`` beside the checkout
    when it is there, else sentences the project generates (the synthetic corpus, half a second), so a fresh
    clone passes offline. Nothing is downloaded: a user who wants the tests on the real text gets it with
    textune's checksum-verified download (``textune data prepare shakespeare``, docs/data.md) and copies
    ``$TEXTUNE_CACHE_DIR/downloads/tinyshakespeare.txt`` to ``../shared/data/``.
    """
    shared = SHARED_DATA / "tinyshakespeare.txt"
    if shared.is_file():
        return shared
    generated = tmp_path_factory.mktemp("generated-text") / "generated.txt"
    generated.write_text(MarkovSource(GENERATED_TEXT).generate(GENERATED_TEXT.characters), encoding="utf-8")
    return generated


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own textune cache so tests never see each other's datasets."""
    cache = tmp_path_factory.mktemp("textune-cache")
    monkeypatch.setenv("TEXTUNE_CACHE_DIR", str(cache))
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    # A user's own tinyshakespeare settings would change what the shakespeare built-in tests download.
    monkeypatch.delenv("TEXTUNE_SHAKESPEARE_PATH", raising=False)
    monkeypatch.delenv("TEXTUNE_SHAKESPEARE_URL", raising=False)
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


def build_wheel(workdir: Path) -> tuple[Path, str]:
    """Build textune's wheel offline into ``workdir``/dist; returns the wheel and pip's output.

    From a copy of the packaged files in ``workdir``/source, so the build's own folders (build/, *.egg-info)
    never land in the checkout.
    """
    from cluster.jobs import SHIPPED_PACKAGES  # every package the wheel holds

    source = workdir / "source"
    source.mkdir(parents=True)
    for name in ("setup.cfg", "pyproject.toml", "README.md"):
        shutil.copy2(REPO_ROOT / name, source / name)
    for package in SHIPPED_PACKAGES:
        shutil.copytree(REPO_ROOT / package, source / package, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                             "--wheel-dir", str(workdir / "dist"), str(source)],
                            capture_output=True, text=True, timeout=240)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    [wheel] = (workdir / "dist").glob("textune-*.whl")
    return wheel, output


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
