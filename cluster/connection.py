"""Connect a driver to Ray: an embedded local Ray, or an existing cluster by address, failing fast.

``ray.init`` on its own retries an unreachable address for minutes and a rejected token for about 20 s
before it says "Failed to connect". :func:`connect` checks first, within seconds: the TCP port answers,
and (for a cluster address) the head's GCS accepts this process's token. Each failure is a TextuneError
that names the address or the variable to set.

Addresses (``--address``):

- ``None``: ``$RAY_ADDRESS`` when set, otherwise an embedded local Ray bound to 127.0.0.1 whose dashboard
  is off (or on 127.0.0.1 when asked for).
- ``auto``: ``$RAY_ADDRESS``, else the cluster started by ``textune cluster up``, else the last cluster
  ``ray start`` started on this machine.
- ``HOST:PORT``: the head's GCS port (6379 unless changed).
- ``ray://HOST:PORT``: Ray Client (port 10001 by default).

An address that names the cluster ``textune cluster up`` recorded (its GCS address or its Jobs API URL) takes
that cluster's token unless the user set one (``RAY_AUTH_TOKEN`` or ``RAY_AUTH_TOKEN_PATH``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cluster import auth, ray_private
from cluster.local_state import read_state, recorded_cluster_at
from textune.errors import TextuneError

log = logging.getLogger(__name__)

PROBE_TIMEOUT_S = 3.0
RAY_CLIENT_PREFIX = "ray://"
LOOPBACK = "127.0.0.1"


@dataclass(frozen=True)
class ClusterAddress:
    """A resolved ``--address``: ``gcs_address`` is ``None`` for an embedded local Ray."""

    given: str | None
    gcs_address: str | None
    ray_client: bool = False

    @property
    def init_address(self) -> str:
        # "local" and not None: ray.init(address=None) would join a cluster `ray start` left on this machine.
        if self.gcs_address is None:
            return "local"
        return (RAY_CLIENT_PREFIX + self.gcs_address) if self.ray_client else self.gcs_address


# An embedded local Ray whatever $RAY_ADDRESS says: for tests and benchmarks that need a Ray of their own.
EMBEDDED = ClusterAddress(None, None)


def resolve_address(address: str | None, state_directory: Path | None = None) -> ClusterAddress:
    """Turn the user's ``--address`` into what to connect to (see the module docstring); ``state_directory``
    holds the record of a ``textune cluster up`` cluster (default: the cache's)."""
    given = address
    if address is None:
        address = os.environ.get("RAY_ADDRESS") or None
        if address is None:
            return ClusterAddress(given, None)
    address = address.strip()
    if address == "auto":
        address = _auto_address(state_directory)
    recorded = recorded_cluster_at(address, state_directory)
    if recorded is not None:
        auth.default_to_token_file(recorded.token_path)
        if address.startswith(("http://", "https://")):
            address = recorded.gcs_address  # the recorded cluster's Jobs API URL: its GCS address is known
    if address.startswith(("http://", "https://")):
        raise TextuneError(
            f'--address "{address}" is a dashboard (Jobs API) URL, which only `textune submit` and `textune jobs` use.',
            "To run a search on the cluster, give the head's GCS address HOST:6379 (or "
            "ray://HOST:10001), or submit the job with `textune submit JOB.yaml --address URL`.",
        )
    ray_client = address.startswith(RAY_CLIENT_PREFIX)
    host_port = address[len(RAY_CLIENT_PREFIX) :] if ray_client else address
    _split_host_port(host_port)
    return ClusterAddress(given, host_port, ray_client)


def _auto_address(state_directory: Path | None) -> str:
    if os.environ.get("RAY_ADDRESS"):
        return os.environ["RAY_ADDRESS"]
    state = read_state(state_directory)
    if state is not None:
        return state.gcs_address
    found = ray_private.local_cluster_address()
    if found is None:
        raise TextuneError(
            "--address auto found no running cluster on this machine.",
            "Start one with `textune cluster up`, or give the head's address HOST:6379.",
        )
    return found


def _split_host_port(host_port: str) -> tuple[str, int]:
    host, sep, port = host_port.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise TextuneError(
            f'--address "{host_port}" is not HOST:PORT.',
            "Give the head's GCS address, e.g. 10.0.0.5:6379, or ray://HOST:10001, or auto.",
        )
    return host.strip("[]"), int(port)


def check_reachable(host_port: str, timeout_s: float = PROBE_TIMEOUT_S) -> None:
    """Raise a TextuneError within ``timeout_s`` unless something accepts TCP connections at ``host_port``."""
    host, port = _split_host_port(host_port)
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            pass
    except OSError as exc:
        reason = "timed out" if isinstance(exc, TimeoutError) else (exc.strerror or str(exc))
        raise TextuneError(
            f"cannot reach a Ray cluster at {host_port} ({reason}).",
            "Check that the head node is up and the address and port are right (GCS port, "
            "6379 by default); from outside the cluster's network use an SSH tunnel or VPN.",
        ) from exc


def check_token(gcs_address: str) -> None:
    """Raise a TextuneError naming the variable to set when the cluster's GCS rejects this process's token.

    A bare GCS client fails at once on a bad token, where ``ray.init`` retries for about 20 s.
    """
    from ray.exceptions import AuthenticationError

    source = auth.token_source()
    try:
        with _native_stderr_silenced():
            ray_private.check_gcs_accepts(gcs_address)
    except AuthenticationError as exc:
        if source is None:
            raise TextuneError(
                f"the Ray cluster at {gcs_address} requires an auth token and none is set.", auth.SET_TOKEN_HINT
            ) from exc
        raise TextuneError(
            f"the Ray cluster at {gcs_address} rejected the auth token from {source}.", auth.SET_TOKEN_HINT
        ) from exc
    except Exception as exc:  # Ray raises several types for a port that is not a GCS
        raise TextuneError(
            f"{gcs_address} accepts connections but no Ray GCS of this version answers there "
            f"({type(exc).__name__}: {exc}).",
            "Give the head's GCS port (6379 by default), not the dashboard's or another "
            "service's, and use the cluster's Ray version.",
        ) from exc


@contextlib.contextmanager
def _native_stderr_silenced() -> Iterator[None]:
    """Hide what Ray's C++ core writes to stderr meanwhile (its warning about a rejected token repeats the
    error this module raises, and would come before it on the terminal)."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def check_connectable(address: ClusterAddress) -> None:
    """The checks :func:`connect` runs before ``ray.init`` (no-op for an embedded local Ray)."""
    if address.gcs_address is None:
        return
    auth.enable_token_mode()
    if os.environ.get(auth.MODE_VAR) == "token" and auth.token_source() is None:
        raise TextuneError(
            f"{auth.MODE_VAR}=token is set but no auth token was found for {address.gcs_address}.", auth.SET_TOKEN_HINT
        )
    check_reachable(address.gcs_address)
    if not address.ray_client:
        check_token(address.gcs_address)


@contextlib.contextmanager
def _private_token() -> Iterator[None]:
    """While an embedded Ray runs: a token of its own, never written to disk.

    Left to itself, Ray writes a token to ~/.ray/auth_token, readable by every user of the machine under the
    usual umask, and leaves it there. This one lives in the environment of the driver and of the processes
    Ray starts (which only this user can read), so a killed run leaves nothing behind either. A token or auth
    mode the user set is used as it is.
    """
    variables = (auth.MODE_VAR, auth.TOKEN_VAR, auth.TOKEN_PATH_VAR)
    if any(os.environ.get(name) for name in variables):
        yield
        return
    saved = {name: os.environ.get(name) for name in variables}
    os.environ.update({auth.MODE_VAR: "token", auth.TOKEN_VAR: auth.new_token()})
    ray_private.reload_auth_config()
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        ray_private.reload_auth_config()


@contextlib.contextmanager
def connect(
    address: str | ClusterAddress | None = None,
    *,
    num_cpus: int | None = None,
    num_gpus: int | None = None,
    dashboard: bool = False,
    **init_options: Any,
) -> Iterator[ClusterAddress]:
    """``ray.init`` for ``address``; shuts Ray down on exit if this call started the connection.

    ``address`` is the user's ``--address``, or a :class:`ClusterAddress` the caller already resolved and
    passed through :func:`check_connectable` (so it is not probed twice). ``num_cpus``/``num_gpus``/
    ``dashboard`` shape an embedded local Ray and are ignored for a cluster address (a cluster declares its
    own resources). ``init_options`` go to ``ray.init`` unchanged (e.g. ``runtime_env``, ``logging_level``).
    """
    import ray

    checked = isinstance(address, ClusterAddress)
    resolved = address if isinstance(address, ClusterAddress) else resolve_address(address)
    if ray.is_initialized():
        # A caller (or a Ray job's driver) already connected this process: use that connection as is.
        yield resolved
        return
    if not checked:
        check_connectable(resolved)
    with contextlib.ExitStack() as session:
        starting: contextlib.AbstractContextManager[None] = contextlib.nullcontext()
        if resolved.gcs_address is None:
            init_options.update(
                num_cpus=num_cpus,
                num_gpus=num_gpus,
                include_dashboard=dashboard,
                dashboard_host=LOOPBACK,
                _node_ip_address=LOOPBACK,
            )
            session.enter_context(_private_token())  # for the whole session: Ray's processes start with it
            starting = ray_private.single_machine_ray()  # every process of it listens on 127.0.0.1 only
            log.info("starting an embedded local Ray (%s)", LOOPBACK)
        else:
            log.info("connecting to the Ray cluster at %s", resolved.init_address)
        try:
            with starting:
                ray.init(address=resolved.init_address, **init_options)
        except ConnectionError as exc:
            raise TextuneError(
                f"could not connect to the Ray cluster at {resolved.init_address}: {exc}.",
                "Check the address and that the cluster runs the same Ray version.",
            ) from exc
        try:
            yield resolved
        finally:
            ray.shutdown()
