"""Ray Tune's copies onto local storage go through whole-file writes: a writer killed half-way, or one whose
disk fills up, leaves the previous version of the file intact (cluster.atomic_local_fs)."""

from __future__ import annotations

import contextlib
import gc
import os
import pickle
import stat
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pyarrow.fs as pafs
import pytest

from cluster.atomic_local_fs import PARTIAL_MARK, for_ray_tune, remove_staging_leftovers
from conftest import REPO_ROOT

# A writer that copies half of a new version of the file, then is killed before it closes the file.
KILLED_WRITER = """
import os, signal, sys
from pyarrow import fs
from cluster.atomic_local_fs import for_ray_tune
stream = for_ray_tune(fs.LocalFileSystem()).open_output_stream(sys.argv[1])
stream.write(b"new " * 50_000)
stream.flush()
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_writer_killed_half_way_leaves_the_old_file_whole(tmp_path: Path) -> None:
    target = tmp_path / "searcher-state-2026.pkl"
    target.write_bytes(b"old snapshot")
    killed = subprocess.run([sys.executable, "-c", KILLED_WRITER, str(target)], cwd=REPO_ROOT,
                            env={**os.environ, "PYTHONPATH": str(REPO_ROOT)}, timeout=60)
    assert killed.returncode == -9
    assert target.read_bytes() == b"old snapshot"
    leftovers = [p.name for p in tmp_path.iterdir() if p != target]
    # What the killed writer left is hidden, so Ray's patterns (searcher-state-*.pkl, ...) never match it.
    assert len(leftovers) == 1 and leftovers[0].startswith("." + target.name + PARTIAL_MARK)
    # The end of the run or resume removes it (tune_jobs.runner), and nothing else.
    remove_staging_leftovers(pafs.LocalFileSystem(), str(tmp_path))
    assert list(tmp_path.iterdir()) == [target] and target.read_bytes() == b"old snapshot"


def test_copies_arrive_whole_with_the_usual_permissions_and_the_filesystem_travels(tmp_path: Path) -> None:
    source = tmp_path / "staging"
    (source / "trial_1").mkdir(parents=True)
    (source / "experiment_state.json").write_text('{"trials": 1}')
    (source / "trial_1" / "state.pt").write_bytes(os.urandom(3 << 20))
    filesystem = pickle.loads(pickle.dumps(for_ray_tune(pafs.LocalFileSystem())))  # as Ray ships it to trials
    pafs.copy_files(str(source), str(tmp_path / "storage"), destination_filesystem=filesystem)
    for name in ("experiment_state.json", "trial_1/state.pt"):
        copied = tmp_path / "storage" / name
        assert copied.read_bytes() == (source / name).read_bytes()
        umask = os.umask(0)
        os.umask(umask)
        assert stat.S_IMODE(copied.stat().st_mode) == 0o666 & ~umask
    assert not [p for p in (tmp_path / "storage").rglob("*") if PARTIAL_MARK in p.name]
    filesystem.copy_file(str(tmp_path / "storage" / "experiment_state.json"), str(tmp_path / "copy.json"))
    assert (tmp_path / "copy.json").read_text() == '{"trials": 1}'
    # Remote storage is left as it is: an object store replaces each object in one step already.
    s3 = pafs.S3FileSystem(region="us-east-1", endpoint_override="127.0.0.1:1")
    assert for_ray_tune(s3) is s3


@contextlib.contextmanager
def tmpfs(directory: Path, size: str) -> Iterator[Path]:
    """A real tmpfs of ``size`` at ``directory``, unmounted afterwards; skips where mounting is impossible."""
    directory.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(directory)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root, as `make test` runs): {mounted.stderr.strip()}")
    try:
        yield directory
    finally:
        subprocess.run(["umount", "-l", str(directory)], check=True)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 1 MiB disk."""
    with tmpfs(tmp_path / "disk", "1m") as disk:
        yield disk


@pytest.mark.parametrize("write", ["copy_files", "copy_file", "stream"])
def test_a_write_that_fills_the_disk_keeps_the_old_file_and_leaves_no_staging_file(small_disk: Path, tmp_path: Path,
                                                                                  write: str) -> None:
    target = small_disk / "experiment_state-2026.json"
    target.write_bytes(b"previous snapshot")
    source = tmp_path / "staging"
    source.mkdir()
    (source / target.name).write_bytes(os.urandom(2 << 20))  # twice what the disk holds
    filesystem = for_ray_tune(pafs.LocalFileSystem())
    with pytest.raises(OSError, match="No space left on device"):
        if write == "copy_files":  # what Ray Tune does with each snapshot
            pafs.copy_files(str(source), str(small_disk), destination_filesystem=filesystem)
        elif write == "copy_file":
            filesystem.copy_file(str(source / target.name), str(target))
        else:
            with filesystem.open_output_stream(str(target)) as stream:
                stream.write((source / target.name).read_bytes())
    assert target.read_bytes() == b"previous snapshot"
    assert [p.name for p in small_disk.iterdir()] == [target.name]
    # The failed write gave its space back: the next snapshot that fits replaces the old one.
    (source / target.name).write_bytes(b"next snapshot")
    pafs.copy_files(str(source), str(small_disk), destination_filesystem=filesystem)
    assert target.read_bytes() == b"next snapshot"


def test_a_stream_that_failed_or_was_dropped_unclosed_neither_replaces_the_file_nor_leaves_its_staging_file(
        small_disk: Path) -> None:
    target = small_disk / "experiment_state-2026.json"
    target.write_bytes(b"previous snapshot")
    filesystem = for_ray_tune(pafs.LocalFileSystem())
    failed = filesystem.open_output_stream(str(target))
    with pytest.raises(OSError, match="No space left on device"):
        failed.write(os.urandom(2 << 20))
    # pyarrow drops a stream whose write failed without closing it, and the exception's traceback can keep it
    # alive until a trial's process is killed: its staging file and space are given back at the failed write.
    assert [p.name for p in small_disk.iterdir()] == [target.name]
    dropped = filesystem.open_output_stream(str(target))  # a copy that gave up on a failed read
    dropped.write(b"the first half of the next snapshot")
    del dropped
    gc.collect()
    assert target.read_bytes() == b"previous snapshot"  # before, collecting it committed the half
    assert [p.name for p in small_disk.iterdir()] == [target.name]
    failed.close()  # what a later close of the failed stream does: nothing
    assert target.read_bytes() == b"previous snapshot"
