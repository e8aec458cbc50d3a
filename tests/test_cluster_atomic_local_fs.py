"""Ray Tune's copies onto local storage go through whole-file writes: a writer killed half-way leaves the
previous version of the file intact (cluster.atomic_local_fs)."""

from __future__ import annotations

import os
import pickle
import stat
import subprocess
import sys
from pathlib import Path

import pyarrow.fs as pafs

from cluster.atomic_local_fs import PARTIAL_MARK, for_ray_tune
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
