"""Local storage for Ray Tune where every file written appears whole or not at all.

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

Only writes differ from ``pyarrow.fs.LocalFileSystem``; reads, listings and deletes are passed through.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import secrets
from pathlib import Path
from typing import Any

import pyarrow
import pyarrow.fs as pafs

PARTIAL_MARK = ".partial-"


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
        # Created like any new file (mode 0666 less the umask), not private as mkstemp's would be.
        super().__init__(self._staging, "xb")

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
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._staging)

    def close(self) -> None:
        if self.closed:
            return
        try:
            super().close()  # where a disk reports a failed write only now (NFS), this raises
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._staging)
            raise
        os.replace(self._staging, self._target)

    def __del__(self) -> None:
        # io.IOBase's finalizer would call close(), committing whatever a dropped stream had written so far.
        self.abort()


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
