"""Ship a prepared dataset to every node: upload once to the run's storage, cache on each node on first use.

A prepared dataset's directory name is a hash of everything that made it, so an upload under that name is
never stale: it is reused, never overwritten. The manifest is uploaded last, so a remote directory with a
manifest is complete. On a node, the copy lands in the same dataset cache ``prepare_dataset`` fills,
downloaded into a temporary directory and renamed into place under the dataset lock: trials that start
together on one node download it once, and a node that prepared the dataset downloads nothing.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pyarrow.fs as pafs

from cluster.storage import StorageOptions, join_uri, resolve_storage
from data_pipeline.cache import MANIFEST_FILE, building, cache_root, ensure_writable_dir, is_complete, locked
from textune.errors import TextuneError

log = logging.getLogger(__name__)

REMOTE_FOLDER = "datasets"


def upload_dataset(local_dir: Path, storage_uri: str, options: StorageOptions | None = None) -> str:
    """Copy ``local_dir`` to ``<storage_uri>/datasets/<name>`` unless it is there already; its URI."""
    local_dir = Path(local_dir)
    if not is_complete(local_dir):
        raise TextuneError(
            f"{local_dir} is not a prepared dataset (no {MANIFEST_FILE}).",
            "Prepare it first (`textune data prepare ...`).",
        )
    filesystem, base = resolve_storage(storage_uri, options)
    remote = f"{base}/{REMOTE_FOLDER}/{local_dir.name}"
    uri = join_uri(storage_uri, REMOTE_FOLDER, local_dir.name)
    if _remote_is_complete(filesystem, remote):
        log.info("dataset %s is already in %s", local_dir.name, uri)
        return uri
    log.info("uploading dataset %s to %s", local_dir.name, uri)
    local_fs = pafs.LocalFileSystem()
    filesystem.create_dir(remote, recursive=True)
    files = sorted(path for path in local_dir.rglob("*") if path.is_file() and path.name != MANIFEST_FILE)
    for path in [*files, local_dir / MANIFEST_FILE]:  # the manifest last: it marks the upload complete
        target = f"{remote}/{path.relative_to(local_dir).as_posix()}"
        filesystem.create_dir(target.rsplit("/", 1)[0], recursive=True)
        pafs.copy_files(str(path), target, source_filesystem=local_fs, destination_filesystem=filesystem)
    return uri


def materialize_dataset(uri: str, options: StorageOptions | None = None) -> Path:
    """A local directory holding the dataset at ``uri``: downloaded into this node's cache on first use."""
    filesystem, remote = resolve_storage(uri, options)
    if isinstance(filesystem, pafs.LocalFileSystem):
        return Path(remote)
    name = remote.rstrip("/").rsplit("/", 1)[-1]
    root = ensure_writable_dir(cache_root() / "datasets", "dataset cache")
    final = root / name
    if is_complete(final):
        return final
    with locked(root, name):
        if is_complete(final):  # another trial on this node downloaded it while we waited
            return final
        if not _remote_is_complete(filesystem, remote):
            raise TextuneError(
                f"dataset {uri} is missing or incomplete in storage (no {MANIFEST_FILE}).",
                "Run the search again from the driver: it uploads the prepared dataset first.",
            )
        log.info("downloading dataset %s into %s", uri, final)
        with building(root, name) as temp:
            pafs.copy_files(
                remote, str(temp), source_filesystem=filesystem, destination_filesystem=pafs.LocalFileSystem()
            )
    return final


def _remote_is_complete(filesystem: pafs.FileSystem, remote: str) -> bool:
    return filesystem.get_file_info(f"{remote}/{MANIFEST_FILE}").type == pafs.FileType.File
