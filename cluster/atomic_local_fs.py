"""Local storage for Ray Tune where every file written appears whole or not at all, and one snapshot's state
files appear together or not at all.

Ray Tune keeps the experiment's state (trial table, searcher state) in a staging directory and copies it onto
the storage after each snapshot, file by file and in place (``pyarrow.fs.copy_files``). On an object store
each upload replaces its object in one step, but on a local disk or NFS a driver killed during the copy leaves
a truncated ``searcher-state-*.pkl`` or ``experiment_state-*.json`` behind, and the experiment can no longer be
resumed. Through this filesystem each file is written under a hidden temporary name in the same directory and
renamed over the old one when complete, so a killed copy leaves the previous snapshot intact (and at worst a
hidden ``.*.partial-*`` file that no Ray pattern matches, removed by :func:`remove_staging_leftovers` at the end
of the run or resume). A write that fails (a full disk) removes its staging file and keeps the old one too:
Ray Tune logs the failed snapshot and goes on, and the experiment stays resumable from the snapshot before.
Trial checkpoints travel through it too.

Whole files are not enough for a snapshot: Ray Tune uploads its files (the trial table, the searcher's two
files, the callbacks' state) from parallel threads, each on its own, and only logs a failed one. A disk that
fills mid-upload kept the 2 KB searcher state of a snapshot whose 37 KB trial table did not fit, and the resume
then never ran the trials the searcher had created since. So the files of one snapshot (one upload of a
directory: the same session's files, each written once) wait, complete, under their hidden names until every
one of them is complete, and are then renamed together; one failed write discards them all (:class:`_Round`).

Only writes differ from ``pyarrow.fs.LocalFileSystem``; reads, listings and deletes are passed through.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import re
import secrets
import threading
from pathlib import Path
from typing import Any

import pyarrow
import pyarrow.fs as pafs

PARTIAL_MARK = ".partial-"
# Ray Tune 2.60's snapshot files (the CKPT_FILE_TMPL of TuneController, SearchGenerator, Searcher,
# BasicVariantGenerator and CallbackList): KIND-SESSION.json|pkl, SESSION the driver session's start time.
SNAPSHOT_FILE = re.compile(
    r"(experiment_state|search_gen_state|searcher-state|basic-variant-state|callback-states)"
    r"-(.+)\.(?:json|pkl)"
)
TRIAL_TABLE = "experiment_state"  # in every snapshot


class _ReplaceOnClose(io.FileIO):
    """A new file under a hidden temporary name that becomes ``target`` when closed.

    Only a file whose every write and whose close succeeded replaces the target. After a failed one (a full
    disk: ENOSPC, a quota, an I/O error) the staging file is removed at once and the target keeps its old
    content, so a disk that fills up mid-snapshot costs that snapshot, never the one before it. A file dropped
    without ``close()`` (pyarrow's copy gives up on a failed read; a writer's exception unwinds) never
    replaces the target either: it is discarded when collected.
    """

    def __init__(self, target: str) -> None:
        directory, name = os.path.split(target)
        self._staging = os.path.join(directory, f".{name}{PARTIAL_MARK}{secrets.token_hex(4)}")
        self._target = target
        match = SNAPSHOT_FILE.fullmatch(name)
        self.kind = match[1] if match else ""
        # A snapshot file is renamed with the rest of its snapshot's files, which joined the same round.
        self._round = _Round.join(os.path.normpath(directory), match[1], match[2]) if match else None
        try:
            # Created like any new file (mode 0666 less the umask), not private as mkstemp's would be.
            super().__init__(self._staging, "xb")
        except BaseException:
            if self._round is not None:
                self._round.fail()
            raise

    def write(self, data: Any) -> int:
        # A raw write may take fewer bytes than given (a disk filling up takes what fits), and pyarrow's
        # PythonFile ignores the count: so write all of it here, or fail.
        view = memoryview(data).cast("B")
        size = view.nbytes
        try:
            while view:
                written = super().write(view)
                if not written:
                    raise OSError(errno.ENOSPC, f"no byte could be written to {self._staging}")
                view = view[written:]
        except BaseException:
            # Discarded now, not at close: pyarrow drops a stream whose write failed without closing it, and
            # the exception's traceback keeps this object alive until the process ends (a trial's actor is
            # then killed), which would leave the staging file and its space behind.
            self.abort()
            raise
        return size

    def abort(self) -> None:
        """Close without replacing the target: the staging file is removed."""
        if self.closed:
            return
        try:
            with contextlib.suppress(OSError):  # the write is given up: a failed flush on close changes nothing
                super().close()
        finally:
            self.discard()
            if self._round is not None:
                self._round.fail()

    def close(self) -> None:
        if self.closed:
            return
        try:
            super().close()  # where a disk reports a failed write only now (NFS), this raises
        except BaseException:
            self.discard()
            if self._round is not None:
                self._round.fail()
            raise
        if self._round is None:
            self.commit()
        else:
            self._round.arrive(self)

    def commit(self) -> None:
        """Replace the target with the complete staging file (after a successful close)."""
        os.replace(self._staging, self._target)

    def discard(self) -> None:
        """Remove the staging file; the target keeps its old content."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._staging)

    def __del__(self) -> None:
        # io.IOBase's finalizer would call close(), committing whatever a dropped stream had written so far.
        self.abort()


class _Round:
    """One upload of one snapshot's files (one directory, one session): renamed together, or not at all.

    Ray Tune writes every file of its staging directory in each upload, each once, and starts an upload only when
    the one before has ended; so a kind written again starts the next round. A round commits (renames every file)
    once it holds a complete file of every kind it expects and of every kind opened in it; one failed write,
    open or close discards the round's files, including those still being written. It expects the kinds the
    round before it held, and, in the first round of a process, the kinds already on storage (a resume's new
    session writes what the session before wrote) plus the trial table. A round that never got an expected kind
    is discarded when the next one starts, which expects what it did get.
    """

    _lock = threading.RLock()  # re-entrant: a stream dropped unclosed fails its round from the collector
    _current: dict[tuple[str, str], _Round] = {}  # by (directory, session), in this process

    def __init__(self, expected: frozenset[str]) -> None:
        self.expected = expected
        self.opened: set[str] = set()
        self.written: dict[str, _ReplaceOnClose] = {}  # by kind: closed complete, waiting for the rest
        self.state = "open"  # then "committed" or "failed"

    @classmethod
    def join(cls, directory: str, kind: str, session: str) -> _Round:
        """The round a new file of ``kind`` belongs to."""
        with cls._lock:
            previous = cls._current.get((directory, session))
            if previous is not None and kind not in previous.opened:
                current = previous  # a later file of the same upload, also of a round already ended
            elif previous is None:
                current = cls(frozenset(_kinds_on_storage(directory) | {TRIAL_TABLE}))
            elif previous.state == "failed":  # what it opened is no guide: a copy may stop at its first error
                current = cls(previous.expected | previous.opened)
            else:
                if previous.state == "open":  # incomplete: a kind it expected (from storage) never came
                    previous.fail()
                current = cls(frozenset(previous.opened))
            cls._current[(directory, session)] = current
            current.opened.add(kind)
            return current

    def arrive(self, written: _ReplaceOnClose) -> None:
        """``written`` closed complete: keep it for the commit, or follow the round's end."""
        with self._lock:
            if self.state == "failed":
                written.discard()
            elif self.state == "committed":  # a kind the round did not expect, late: it cannot wait for a next one
                written.commit()
            else:
                self.written[written.kind] = written
                if self.expected <= self.written.keys() and self.opened == self.written.keys():
                    self.state = "committed"
                    for kind in sorted(self.written):
                        self.written[kind].commit()

    def fail(self) -> None:
        """A write of this round failed: discard its files, now and as the others arrive."""
        with self._lock:
            if self.state != "open":
                return
            self.state = "failed"
            for waiting in self.written.values():
                waiting.discard()
            self.written.clear()


def _kinds_on_storage(directory: str) -> set[str]:
    """The kinds of snapshot files in ``directory`` (committed ones: the hidden staging files do not match)."""
    try:
        names = os.listdir(directory)
    except OSError:
        return set()
    return {match[1] for name in names if (match := SNAPSHOT_FILE.fullmatch(name))}


class AtomicLocalHandler(pafs.FileSystemHandler):
    """A pyarrow filesystem handler: the local filesystem, with whole-file (rename-on-close) writes."""

    def __init__(self) -> None:
        self._local = pafs.LocalFileSystem()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, AtomicLocalHandler)

    def __ne__(self, other: object) -> bool:
        return not self == other

    def __reduce__(self) -> tuple[Any, tuple]:
        # Ray ships the storage filesystem to every trial process.
        return (AtomicLocalHandler, ())

    def get_type_name(self) -> str:
        return "textune-atomic-local"

    def normalize_path(self, path: str) -> str:
        return self._local.normalize_path(path)

    def get_file_info(self, paths: list[str]) -> list[pafs.FileInfo]:
        return self._local.get_file_info(paths)

    def get_file_info_selector(self, selector: pafs.FileSelector) -> list[pafs.FileInfo]:
        return self._local.get_file_info(selector)

    def create_dir(self, path: str, recursive: bool) -> None:
        self._local.create_dir(path, recursive=recursive)

    def delete_dir(self, path: str) -> None:
        self._local.delete_dir(path)

    def delete_dir_contents(self, path: str, missing_dir_ok: bool = False) -> None:
        self._local.delete_dir_contents(path, missing_dir_ok=missing_dir_ok)

    def delete_root_dir_contents(self) -> None:
        self._local.delete_dir_contents("/", accept_root_dir=True)

    def delete_file(self, path: str) -> None:
        self._local.delete_file(path)

    def move(self, src: str, dest: str) -> None:
        self._local.move(src, dest)

    def copy_file(self, src: str, dest: str) -> None:
        with self._local.open_input_stream(src) as source:
            target = _ReplaceOnClose(dest)
            try:
                while chunk := source.read(1 << 20):
                    target.write(chunk)
            except BaseException:
                target.abort()  # a failed read must not leave half a copy either
                raise
            target.close()

    def open_input_stream(self, path: str) -> pyarrow.NativeFile:
        return self._local.open_input_stream(path)

    def open_input_file(self, path: str) -> pyarrow.NativeFile:
        return self._local.open_input_file(path)

    def open_output_stream(self, path: str, metadata: dict | None) -> pyarrow.NativeFile:
        return pyarrow.PythonFile(_ReplaceOnClose(path), mode="w")

    def open_append_stream(self, path: str, metadata: dict | None) -> pyarrow.NativeFile:
        return self._local.open_append_stream(path)


def remove_staging_leftovers(filesystem: pafs.FileSystem, path: str) -> None:
    """Remove the hidden staging files (``.NAME.partial-XXXX``) under ``path`` on local storage.

    Only a writer killed mid-write (a trial's actor killed during a checkpoint upload) leaves one; call this when
    no writer of ``path`` is left (the search's processes have ended), since a live writer's file would go too.
    """
    if not isinstance(filesystem, pafs.LocalFileSystem):
        return
    for leftover in Path(path).rglob(f".*{PARTIAL_MARK}*"):
        with contextlib.suppress(FileNotFoundError):
            leftover.unlink()


def for_ray_tune(filesystem: pafs.FileSystem) -> pafs.FileSystem:
    """The filesystem to give Ray Tune for storage on ``filesystem``: whole-file writes where it is local."""
    if isinstance(filesystem, pafs.LocalFileSystem):
        return pafs.PyFileSystem(AtomicLocalHandler())
    return filesystem
