"""Shared test fixtures: real or generated text, an isolated cache, an S3 server and a CLI runner.

Helpers that several test modules use live here or in tests/support/; no test module imports another.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from data_pipeline.config import SyntheticConfig
from data_pipeline.synthetic import MarkovSource
from support.models import prepare

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
# The most any test reads (the tokenizer tests: 300,000 characters); 500 words give BPE merges to spare.
GENERATED_TEXT = SyntheticConfig(characters=300_000, words=500, branching=16)


# Fixtures that start Ray or a server: a test that uses one, directly or through another fixture, is `slow`
# (`make test-fast` leaves it out). Tests that are slow for another reason carry the marker themselves.
SLOW_FIXTURES = frozenset({"finished_experiment", "ray_session", "s3_endpoint"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if SLOW_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


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


@pytest.fixture(scope="session")
def shakespeare_dataset(shakespeare_file: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A char-level dataset of the first 60k characters of tinyshakespeare (90/5/5 split)."""
    root = tmp_path_factory.mktemp("models-data")
    excerpt = root / "excerpt.txt"
    excerpt.write_text(shakespeare_file.read_text(encoding="utf-8")[:60_000], encoding="utf-8")
    return prepare(excerpt, root / "datasets")


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """One torch thread for a module (``pytestmark = pytest.mark.usefixtures("one_thread")``): tiny models gain
    nothing from threads, and on a busy machine thread hand-offs cost seconds."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


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


@pytest.fixture(scope="module")
def ray_session(module_cache: Path) -> Iterator[None]:
    """An embedded local Ray of 2 CPUs for a whole test module, started as ``textune run`` starts one (through
    ``cluster.connection.connect``: bound to 127.0.0.1, with a token of its own), shut down after the module.

    Drivers the module runs in this process (``tune_jobs.cli.main.main``) reuse it; its processes see the
    module's dataset cache.
    """
    from cluster.connection import EMBEDDED, connect

    with connect(EMBEDDED, num_cpus=2, log_to_driver=False):
        yield


@pytest.fixture
def shared_module_cache(module_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Overrides the per-test cache (``pytest.mark.usefixtures``): the test reads the module's prepared corpus."""
    monkeypatch.setenv("TEXTUNE_CACHE_DIR", str(module_cache))


def run_textune(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """Run the real ``textune`` CLI in a subprocess, as a user would."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "tune_jobs.cli.main", *args],
        capture_output=True,
        text=True,
        env=full_env,
        cwd=cwd or REPO_ROOT,
        timeout=timeout,
    )


def run_until(job_path: Path, ready: Callable[[], bool], stop_signal: signal.Signals) -> str:
    """``textune run JOB`` until ``ready()``, then ``stop_signal`` to its driver; the driver's output."""
    # A session of its own, so the Ray processes a killed driver leaves behind can be stopped with it.
    driver = subprocess.Popen(
        [sys.executable, "-m", "tune_jobs.cli.main", "run", str(job_path)],
        cwd=REPO_ROOT,
        env=dict(os.environ),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 180
        while not ready():
            assert driver.poll() is None, driver.stdout.read()
            assert time.monotonic() < deadline, "the search did not get there in time"
            time.sleep(0.2)
        driver.send_signal(stop_signal)
        output, _ = driver.communicate(timeout=120)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(driver.pid, signal.SIGKILL)
        driver.wait()
    return output


BUCKET = "textune-test"


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """``127.0.0.1:PORT`` of a moto S3 server holding one empty bucket (BUCKET); fake credentials in the
    environment."""
    import pyarrow.fs as pafs
    from moto.server import ThreadedMotoServer

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AWS_ACCESS_KEY_ID", "testing")
        patch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        patch.setenv("AWS_DEFAULT_REGION", "us-east-1")
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        try:
            host, port = server.get_host_and_port()
            endpoint = f"{host}:{port}"
            pafs.S3FileSystem(
                endpoint_override=endpoint, scheme="http", region="us-east-1", allow_bucket_creation=True
            ).create_dir(BUCKET)
            yield endpoint
        finally:
            server.stop()


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
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--wheel-dir",
            str(workdir / "dist"),
            str(source),
        ],
        capture_output=True,
        text=True,
        timeout=240,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    [wheel] = (workdir / "dist").glob("textune-*.whl")
    return wheel, output


# A real ASHA + HyperOpt search on the synthetic corpus, small enough that Ray's start-up dominates (about a
# minute on a busy 2-core machine): the quickstart spec with a tiny model and corpus, rungs at 1024, 2048,
# 4096 and 8192 tokens.
FINISHED_EXPERIMENT_SETTINGS = (
    "num_samples=8",
    "max_concurrent_trials=2",
    "data.synthetic.characters=60000",
    "model.n_layers=1",
    "model.block_size=32",
    "model.eval_max_blocks=4",
    "model.warmup_tokens=512",
    "budget.max_tokens=8192",
    "budget.eval_every_tokens=1024",
    "budget.time_budget_s=120",
    "scheduler.grace_period_tokens=1024",
    "scheduler.reduction_factor=2",
    "search.n_initial_points=4",
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
    result = run_textune(
        "run",
        str(REPO_ROOT / "tune_jobs" / "configs" / "quickstart.yaml"),
        "--name",
        "finished",
        *overrides,
        env={"TEXTUNE_CACHE_DIR": str(cache), "RAY_USAGE_STATS_ENABLED": "0"},
        timeout=240,
    )
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
