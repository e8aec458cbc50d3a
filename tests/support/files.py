"""Real files and disks for tests: a snapshot of a directory tree, and a small tmpfs."""

from __future__ import annotations

import contextlib
import hashlib
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest


def snapshot(root: Path) -> dict[str, str]:
    """Every file's SHA-256, every directory and link under ``root``, by relative path."""
    state = {}
    for path in sorted(root.rglob("*")):
        relative = str(path.relative_to(root))
        if path.is_symlink():
            state[relative] = f"link to {path.readlink()}"
        elif path.is_dir():
            state[relative] = "directory"
        else:
            state[relative] = hashlib.sha256(path.read_bytes()).hexdigest()
    return state


@contextlib.contextmanager
def tmpfs(directory: Path, size: str) -> Iterator[Path]:
    """A real tmpfs of ``size`` at ``directory``, unmounted afterwards; skips where mounting is impossible."""
    directory.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(directory)], capture_output=True, text=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root, as `make test` runs): {mounted.stderr.strip()}")
    try:
        yield directory
    finally:
        subprocess.run(["umount", "-l", str(directory)], check=True)
