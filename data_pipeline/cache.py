"""The content-addressed dataset cache: where it lives, who may write it, and how a result appears.

A dataset is built in a temporary directory beside its final place and renamed into place only once its
manifest is written, so a directory under its final name is always complete. An ``fcntl`` lock per dataset
name serialises preparers: the second one waits, then finds the finished result.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from textune.errors import TextuneError

log = logging.getLogger(__name__)

MANIFEST_FILE = "manifest.json"
_TEMP_PREFIX = ".building-"


def cache_root() -> Path:
    """``$TEXTUNE_CACHE_DIR`` or ``~/.cache/textune``."""
    configured = os.environ.get("TEXTUNE_CACHE_DIR")
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "textune"


def is_complete(dataset_dir: Path) -> bool:
    """Only a directory with its manifest counts as a dataset; anything else is an interrupted build."""
    return (dataset_dir / MANIFEST_FILE).is_file()


def ensure_writable_dir(directory: Path, what: str) -> Path:
    """Create ``directory`` if needed and check it accepts files, or raise naming it."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as exc:
        raise TextuneError(
            f"{what} {directory} is not writable: {exc.strerror or exc}.",
            "Choose a directory you can write to (--out DIR, or set TEXTUNE_CACHE_DIR).",
        ) from exc
    return directory


@contextlib.contextmanager
def locked(root: Path, name: str) -> Iterator[None]:
    """Hold the exclusive lock for dataset ``name`` under ``root`` (blocks while another process holds it)."""
    with open(root / f".{name}.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextlib.contextmanager
def building(root: Path, name: str) -> Iterator[Path]:
    """A fresh temporary directory to build ``name`` in; renamed to ``root / name`` when the block succeeds.

    Call under :func:`locked`. Leftovers of interrupted builds of the same name are removed first: while we
    hold the lock nobody else is building it.
    """
    final = root / name
    for stale in root.glob(f"{_TEMP_PREFIX}{name}-*"):
        log.warning("removing an interrupted build: %s", stale)
        shutil.rmtree(stale, ignore_errors=True)
    if final.exists() and not is_complete(final):
        log.warning("removing an incomplete dataset directory (no %s): %s", MANIFEST_FILE, final)
        shutil.rmtree(final)
    temp = Path(tempfile.mkdtemp(prefix=f"{_TEMP_PREFIX}{name}-", dir=root))
    temp.chmod(0o755)  # mkdtemp makes it private; every local reader (e.g. Ray workers) may read a dataset
    try:
        yield temp
        if not is_complete(temp):
            raise RuntimeError(f"build of {name} finished without writing {MANIFEST_FILE}")
        os.rename(temp, final)
    finally:
        if temp.exists():
            shutil.rmtree(temp, ignore_errors=True)
