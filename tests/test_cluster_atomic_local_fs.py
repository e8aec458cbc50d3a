"""Ray Tune's copies onto local storage go through whole-file writes: a writer killed half-way, or one whose
disk fills up, leaves the previous version of the file intact (cluster.atomic_local_fs)."""

from __future__ import annotations

import gc
import os
import pickle
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pyarrow.fs as pafs
import pytest

from cluster.atomic_local_fs import PARTIAL_MARK, for_ray_tune, remove_staging_leftovers
from conftest import REPO_ROOT
from support.files import tmpfs

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
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_WRITER, str(target)],
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        timeout=60,
    )
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


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 1 MiB disk."""
    with tmpfs(tmp_path / "disk", "1m") as disk:
        yield disk


@pytest.mark.parametrize("write", ["copy_files", "copy_file", "stream"])
def test_a_write_that_fills_the_disk_keeps_the_old_file_and_leaves_no_staging_file(
    small_disk: Path, tmp_path: Path, write: str
) -> None:
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
    small_disk: Path,
) -> None:
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


# One snapshot of Ray Tune as its staging directory holds it: the trial table, the searcher's two files and the
# callbacks' state, all named after the driver's session.
SNAPSHOT_KINDS = (
    "experiment_state-{}.json",
    "searcher-state-{}.pkl",
    "search_gen_state-{}.json",
    "callback-states-{}.pkl",
)
OLD, NEW = "2026-11-30_09-00-00", "2026-11-30_10-00-00"


def write_snapshot(directory: Path, session: str, content: bytes, trial_table: bytes | None = None) -> None:
    directory.mkdir(exist_ok=True)
    for kind in SNAPSHOT_KINDS:
        name = kind.format(session)
        (directory / name).write_bytes(
            trial_table if trial_table is not None and "experiment_state" in name else content
        )


def snapshot_on(directory: Path) -> dict[str, bytes]:
    """What Ray Tune's patterns see in ``directory``: not the hidden files still being written."""
    return {path.name: path.read_bytes() for path in sorted(directory.iterdir()) if not path.name.startswith(".")}


def staging_files(directory: Path) -> list[str]:
    return [path.name for path in directory.iterdir() if PARTIAL_MARK in path.name]


@pytest.mark.parametrize("session", [OLD, NEW], ids=["same-session", "resumed-session"])
def test_an_upload_whose_trial_table_does_not_fit_changes_no_file_of_the_snapshot(
    small_disk: Path, tmp_path: Path, session: str
) -> None:
    """Issue 14 A.1's gap: the searcher's small files fit where the trial table did not, and the resume then
    missed the trials the searcher had created since. In a resumed session the new searcher state would have
    become the newest beside the old session's trial table."""
    write_snapshot(small_disk, OLD, b"previous snapshot")
    before = snapshot_on(small_disk)
    staging = tmp_path / "staging"
    write_snapshot(staging, session, b"next", trial_table=os.urandom(2 << 20))  # twice what the disk holds
    filesystem = for_ray_tune(pafs.LocalFileSystem())
    with pytest.raises(OSError, match="No space left on device"):  # Ray Tune's upload, from parallel threads
        pafs.copy_files(str(staging), str(small_disk), destination_filesystem=filesystem)
    assert snapshot_on(small_disk) == before and not staging_files(small_disk)
    # The next snapshot that fits arrives whole: every file, together.
    write_snapshot(staging, session, b"next", trial_table=b"next table")
    pafs.copy_files(str(staging), str(small_disk), destination_filesystem=filesystem)
    expected = {**before, **{kind.format(session): b"next" for kind in SNAPSHOT_KINDS}}
    assert snapshot_on(small_disk) == {**expected, f"experiment_state-{session}.json": b"next table"}
    assert not staging_files(small_disk)


@pytest.mark.parametrize("failing", ["first", "last"])
def test_the_files_of_a_snapshot_appear_only_once_all_are_written(small_disk: Path, failing: str) -> None:
    """Stream by stream, in both orders a parallel upload can take: a file written whole waits, unseen, for the
    others; a failed one discards those that waited and those still to come."""
    write_snapshot(small_disk, OLD, b"previous snapshot")
    before = snapshot_on(small_disk)
    filesystem = for_ray_tune(pafs.LocalFileSystem())
    names = [kind.format(OLD) for kind in SNAPSHOT_KINDS]
    table, others = names[0], names[1:]

    def write(name: str, content: bytes) -> None:
        with filesystem.open_output_stream(str(small_disk / name)) as stream:
            stream.write(content)

    order = [table, *others] if failing == "first" else [*others, table]
    for name in order:
        if name == table:
            with pytest.raises(OSError, match="No space left on device"):
                write(name, os.urandom(2 << 20))
        else:
            write(name, b"next")
            assert snapshot_on(small_disk) == before  # written whole, and not yet visible
    assert snapshot_on(small_disk) == before and not staging_files(small_disk)
    for name in names:  # the next snapshot: visible only with its last file
        assert snapshot_on(small_disk) == before
        write(name, b"whole")
    assert snapshot_on(small_disk) == dict.fromkeys(names, b"whole") and not staging_files(small_disk)


# A driver that uploads the searcher's files of a new snapshot, then is killed while its trial table is written.
KILLED_BETWEEN_FILES = """
import os, signal, sys
from pyarrow import fs
from cluster.atomic_local_fs import for_ray_tune
filesystem = for_ray_tune(fs.LocalFileSystem())
for name in sys.argv[2:]:
    with filesystem.open_output_stream(os.path.join(sys.argv[1], name)) as stream:
        stream.write(b"next")
table = filesystem.open_output_stream(os.path.join(sys.argv[1], "experiment_state-{}.json"))
table.write(b"half of the next")
table.flush()
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_driver_killed_between_the_files_of_a_snapshot_leaves_the_previous_snapshot(tmp_path: Path) -> None:
    write_snapshot(tmp_path / "experiment", OLD, b"previous snapshot")
    before = snapshot_on(tmp_path / "experiment")
    killed = subprocess.run(
        [
            sys.executable,
            "-c",
            KILLED_BETWEEN_FILES.format(OLD),
            str(tmp_path / "experiment"),
            *(kind.format(OLD) for kind in SNAPSHOT_KINDS[1:]),
        ],
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        timeout=60,
    )
    assert killed.returncode == -9
    remove_staging_leftovers(pafs.LocalFileSystem(), str(tmp_path / "experiment"))
    assert snapshot_on(tmp_path / "experiment") == before


def test_the_first_snapshot_and_other_files_are_written_at_once(tmp_path: Path) -> None:
    """Nothing to be consistent with yet: the first upload of an experiment appears as each file is written, and
    files that are no snapshot's (checkpoints, results) never wait."""
    staging = tmp_path / "staging"
    write_snapshot(staging, OLD, b"first")
    (staging / "tuner.pkl").write_bytes(b"tuner")
    filesystem = for_ray_tune(pafs.LocalFileSystem())
    filesystem.create_dir(str(tmp_path / "experiment"))  # as Ray Tune does before each upload
    pafs.copy_files(str(staging), str(tmp_path / "experiment"), destination_filesystem=filesystem)
    assert snapshot_on(tmp_path / "experiment") == snapshot_on(staging)
    with filesystem.open_output_stream(str(tmp_path / "experiment" / "results.parquet")) as stream:
        stream.write(b"rows")
    assert (tmp_path / "experiment" / "results.parquet").read_bytes() == b"rows"
