"""Shared test fixtures: the repo's shared data, an isolated cache and a CLI runner."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

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


def run_textune(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None,
                timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run the real ``textune`` CLI in a subprocess, as a user would."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "tune_jobs.cli.main", *args], capture_output=True, text=True,
                          env=full_env, cwd=cwd or REPO_ROOT, timeout=timeout)


def assert_user_error(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    """A bad-input failure: exit 2, one paragraph on stderr naming what is wrong, no traceback."""
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    message = result.stderr.strip()
    assert message.startswith("error:") or message.startswith("Usage:"), message
    for fragment in fragments:
        assert fragment in message, (fragment, message)
