"""The record of a local cluster started by ``textune cluster up``: its address, token and node processes.

The record is a JSON file in the state directory (``$TEXTUNE_CACHE_DIR/cluster`` unless ``--state-dir``
says otherwise). ``cluster down`` stops exactly the process groups it lists; ``--address auto``, and any
address naming the recorded cluster (its GCS address or its Jobs API URL), find the cluster's token through it.
"""

from __future__ import annotations

import json
import os
import urllib.parse
from pathlib import Path
from typing import Literal

from data_pipeline.cache import cache_root
from textune.config import StrictModel, validate
from textune.errors import TextuneError

STATE_FILE = "cluster.json"
TOKEN_FILE = "auth_token"
# Names of this machine's loopback address: the record says 127.0.0.1, a user may type localhost.
_LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")


class NodeProcess(StrictModel):
    """One ``ray start --block`` process; it leads its own process group (``pgid == pid``)."""

    role: Literal["head", "worker"]
    pid: int
    start_time: int  # from /proc/PID/stat: a recycled pid has another start time
    num_cpus: int
    num_gpus: int
    log_file: str


class LocalClusterState(StrictModel):
    gcs_address: str
    dashboard_url: str
    token_path: Path
    ray_temp_dir: str
    nodes: list[NodeProcess]


def state_dir(explicit: Path | None = None) -> Path:
    return Path(explicit).expanduser() if explicit is not None else cache_root() / "cluster"


def read_state(directory: Path | None = None) -> LocalClusterState | None:
    """The recorded cluster, or ``None`` when no cluster is up from ``directory``."""
    path = state_dir(directory) / STATE_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise TextuneError(
            f"the local cluster record {path} is not valid JSON ({exc.msg}).",
            "Stop the processes it listed by their pids, then delete the file.",
        ) from exc
    return validate(LocalClusterState, data, f"local cluster record {path}")


def recorded_cluster_at(address: str, directory: Path | None = None) -> LocalClusterState | None:
    """The recorded cluster when ``address`` (``HOST:PORT``, ``ray://HOST:PORT`` or a Jobs API URL) names its
    GCS or its Jobs API, else ``None`` (also for an address that does not parse: its user gets that error)."""
    state = read_state(directory)
    if state is None:
        return None
    given = _host_port(address)
    return (
        state
        if given is not None and given in (_host_port(state.gcs_address), _host_port(state.dashboard_url))
        else None
    )


def _host_port(address: str) -> tuple[str, int] | None:
    """(host, port) of an address with or without a scheme, loopback names as 127.0.0.1."""
    try:
        parsed = urllib.parse.urlsplit(address if "://" in address else f"//{address}")
        host, port = parsed.hostname, parsed.port
    except ValueError:
        return None
    if host is None or port is None:
        return None
    return ("127.0.0.1" if host in _LOOPBACK_NAMES else host), port


def write_state(state: LocalClusterState, directory: Path | None = None) -> Path:
    """Write the record atomically (a reader never sees half a file)."""
    path = state_dir(directory) / STATE_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_suffix(".tmp")
    temp.write_text(state.model_dump_json(indent=2), encoding="utf-8")
    os.replace(temp, path)
    return path


def remove_state(directory: Path | None = None) -> None:
    directory = state_dir(directory)
    (directory / STATE_FILE).unlink(missing_ok=True)
    (directory / TOKEN_FILE).unlink(missing_ok=True)
