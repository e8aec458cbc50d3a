"""Experiment storage: a local path (one node, or NFS mounted on every node) or an s3:// / gs:// URI.

:func:`open_storage` turns the user's ``storage`` setting into the ``(pyarrow FileSystem, path)`` pair that
Ray Tune takes as ``RunConfig(storage_path=path, storage_filesystem=fs)``, and checks it before any trial
starts: the bucket exists, a probe object can be written and deleted, and a local disk has free space.
A search that would fail at its first checkpoint fails here instead, in seconds, naming the URI.

S3-compatible servers (MinIO, Ceph, a test server on loopback): the endpoint comes from
``storage_options.endpoint_override`` (or ``?endpoint_override=HOST:PORT&scheme=http`` in the URI, as
pyarrow writes it) or, failing that, the standard ``AWS_ENDPOINT_URL_S3`` /
``AWS_ENDPOINT_URL`` variables (pyarrow itself does not read them). Credentials come from the usual AWS
variables, files or instance roles.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Literal
from urllib.parse import ParseResult, parse_qsl, urlparse

import pyarrow.fs as pafs
from pydantic import Field

from textune.config import StrictModel
from textune.errors import TextuneError
from textune.paths import expand_path

SCHEMES = ("file", "s3", "gs")
ENDPOINT_VARS = ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")
PROBE_PREFIX = ".textune-write-probe-"


class StorageOptions(StrictModel):
    """How to reach the storage (the ``storage_options`` section of a job spec)."""

    endpoint_override: str | None = Field(
        None,
        description="HOST:PORT or URL of an S3-compatible server (default: $AWS_ENDPOINT_URL_S3, "
        "$AWS_ENDPOINT_URL, then the cloud's own endpoint)",
    )
    scheme: Literal["http", "https"] | None = Field(
        None, description="protocol to the endpoint (default: the endpoint URL's, else https)"
    )
    region: str | None = Field(None, description="bucket region (default: the SDK's own lookup)")
    anonymous: bool = Field(False, description="no credentials (public buckets)")
    min_free_gb: float = Field(
        1.0, ge=0, allow_inf_nan=False, description="free space a local storage path must have, in GB"
    )


def open_storage(uri: str, options: StorageOptions | None = None) -> tuple[pafs.FileSystem, str]:
    """Resolve ``uri`` and check it is usable: the pair for ``RunConfig``; raises TextuneError otherwise."""
    options = options or StorageOptions()
    filesystem, path = resolve_storage(uri, options)
    check_storage(filesystem, path, uri, options)
    return filesystem, path


def resolve_storage(uri: str, options: StorageOptions | None = None) -> tuple[pafs.FileSystem, str]:
    """``(filesystem, path inside it)`` for a local path, ``file://``, ``s3://`` or ``gs://`` URI."""
    options = options or StorageOptions()
    parsed = urlparse(uri)
    scheme = parsed.scheme.lower()
    if scheme in ("", "file") or len(scheme) == 1:  # one letter: a Windows drive, i.e. a local path
        return pafs.LocalFileSystem(), str(_local_path(uri, parsed))
    if scheme not in SCHEMES:
        raise TextuneError(
            f'storage "{uri}": unknown scheme "{scheme}://".',
            "Use a local path (on NFS for several nodes), s3://BUCKET/PREFIX or gs://BUCKET/PREFIX.",
        )
    if not parsed.netloc:
        raise TextuneError(f'storage "{uri}" names no bucket.', f"Write it as {scheme}://BUCKET/PREFIX.")
    options = _with_query_options(options, parsed.query, uri)
    path = (parsed.netloc + parsed.path).rstrip("/")
    return (_s3_filesystem(options) if scheme == "s3" else _gcs_filesystem(options)), path


def _local_path(uri: str, parsed: ParseResult) -> Path:
    """The absolute local path of a plain path or ``file://`` URI; refuses what would land somewhere else."""
    if "?" in uri:
        # Elsewhere a "?" starts a URI's storage options (join_uri keeps it last), so a local path holding one
        # would be cut in pieces: one experiment spread over several directories.
        raise TextuneError(
            f'storage "{uri}": a local storage path may not hold "?" (in a URI it starts the storage options).',
            'Choose a directory whose path has no "?".',
        )
    if parsed.scheme.lower() == "file":
        if parsed.netloc not in ("", "localhost"):
            raise TextuneError(
                f'storage "{uri}": "{parsed.netloc}" is read as a host name, so the path would be '
                f'"{parsed.path or "/"}" at the root of this machine.',
                f"Write a local file URI with three slashes (file:///{parsed.netloc}{parsed.path}), "
                "or give the path itself.",
            )
        return expand_path(parsed.path)
    return expand_path(uri)


def join_uri(uri: str, *parts: str) -> str:
    """``uri`` with path ``parts`` appended, keeping a ``?query`` at the end."""
    base, sep, query = uri.partition("?")
    return "/".join([base.rstrip("/"), *parts]) + sep + query


def _with_query_options(options: StorageOptions, query: str, uri: str) -> StorageOptions:
    """Options written into the URI (``s3://b/p?endpoint_override=host:9000&scheme=http``, as pyarrow
    accepts them) take precedence, so one string can describe the whole storage."""
    if not query:
        return options
    from textune.config import validate

    given = dict(parse_qsl(query, keep_blank_values=True))
    return validate(StorageOptions, {**options.model_dump(exclude_unset=True), **given}, f'storage "{uri}" query')


def _endpoint(options: StorageOptions) -> tuple[str | None, str | None]:
    """``(host:port, scheme)`` of an overridden endpoint, from the options or the standard AWS variables."""
    endpoint = options.endpoint_override or next((os.environ[v] for v in ENDPOINT_VARS if os.environ.get(v)), None)
    if endpoint is None:
        return None, options.scheme
    parsed = urlparse(endpoint if "://" in endpoint else f"//{endpoint}")
    return parsed.netloc + parsed.path.rstrip("/"), options.scheme or parsed.scheme or None


def _s3_filesystem(options: StorageOptions) -> pafs.FileSystem:
    endpoint, scheme = _endpoint(options)
    kwargs = {"endpoint_override": endpoint, "scheme": scheme, "region": options.region, "anonymous": options.anonymous}
    return pafs.S3FileSystem(**{k: v for k, v in kwargs.items() if v is not None})


def _gcs_filesystem(options: StorageOptions) -> pafs.FileSystem:
    endpoint, scheme = _endpoint(options)
    kwargs = {
        "endpoint_override": endpoint,
        "scheme": scheme,
        "default_bucket_location": options.region,
        "anonymous": options.anonymous,
    }
    return pafs.GcsFileSystem(**{k: v for k, v in kwargs.items() if v is not None})


def check_storage(filesystem: pafs.FileSystem, path: str, uri: str, options: StorageOptions | None = None) -> None:
    """Write and delete a probe object under ``path``; check a local disk's free space."""
    options = options or StorageOptions()
    local = isinstance(filesystem, pafs.LocalFileSystem)
    if not local:
        _check_bucket(filesystem, path, uri, options)
    probe = f"{path}/{PROBE_PREFIX}{uuid.uuid4().hex}"
    try:
        filesystem.create_dir(path, recursive=True)
        with filesystem.open_output_stream(probe) as stream:
            stream.write(b"textune storage probe\n")
        filesystem.delete_file(probe)
    except (OSError, PermissionError) as exc:
        fix = (
            "Choose a directory this user can write (on a shared disk when several nodes run trials)."
            if local
            else "Check the credentials' write access to the bucket."
        )
        raise TextuneError(f'storage "{uri}" is not writable: {exc}.', fix) from exc
    if local:
        free_gb = shutil.disk_usage(path).free / 1e9
        if free_gb < options.min_free_gb:
            raise TextuneError(
                f'storage "{uri}" has {free_gb:.2f} GB free, less than storage_options.min_free_gb '
                f"= {options.min_free_gb} GB.",
                "Free some space, choose another storage path, or lower min_free_gb.",
            )


@contextlib.contextmanager
def reaching(uri: str, options: StorageOptions | None = None) -> Iterator[None]:
    """Turn an OSError of the storage's file system in the block (an endpoint nobody listens on, a network
    failure, refused credentials) into one TextuneError naming ``storage`` and, when one is set, the endpoint."""
    try:
        yield
    except OSError as exc:
        raise _unreachable(uri, options, exc) from exc


def _unreachable(uri: str, options: StorageOptions | None, exc: OSError) -> TextuneError:
    """The paragraph for storage ``uri`` that failed with ``exc``."""
    query = urlparse(uri).query
    endpoint, _ = _endpoint(_with_query_options(options or StorageOptions(), query, uri))
    via = (
        f" through the endpoint {endpoint} (storage_options.endpoint_override or $AWS_ENDPOINT_URL)" if endpoint else ""
    )
    detail = " ".join(str(exc).split())  # pyarrow's message spans lines; the paragraph must not
    return TextuneError(
        f'storage "{uri}" cannot be reached{via}: {detail}.',
        "Check that the server runs and the network reaches it, the credentials, and storage (and "
        "storage_options.endpoint_override, or AWS_ENDPOINT_URL, for an S3-compatible server).",
    )


def _check_bucket(filesystem: pafs.FileSystem, path: str, uri: str, options: StorageOptions) -> None:
    bucket = path.split("/", 1)[0]
    with reaching(uri, options):
        info = filesystem.get_file_info(bucket)
    if info.type == pafs.FileType.NotFound:
        raise TextuneError(
            f'storage "{uri}": bucket "{bucket}" does not exist.',
            "Create the bucket first (textune never creates buckets), or fix its name.",
        )
