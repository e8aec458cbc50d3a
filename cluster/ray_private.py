"""Every use of Ray's private API in textune, fenced in one place.

The rest of textune speaks Ray's public API only. What follows has no public equivalent in Ray
:data:`RAY_VERSION_WRITTEN_FOR`, and may change in any Ray release without notice: each function says why it
is needed and what public API would replace it. ``tests/test_ray_private.py`` fails when the installed Ray is
another version (check every function here against that version, then raise the constant) and when a private
import appears outside this module.

Ray is imported inside the functions, as elsewhere in ``cluster``: importing Ray costs seconds, and commands
that never reach a cluster should not pay it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass

# The Ray release every function below was read against and tested with (setup.cfg pins ray to 2.60.x).
RAY_VERSION_WRITTEN_FOR = "2.60.0"

# Ray's switch for single-machine Ray (its default on macOS and Windows): with it off, Ray takes the loopback
# address as the node's address instead of swapping 127.0.0.1 for the machine's network address.
SINGLE_MACHINE_VAR = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


def reload_auth_config() -> None:
    """Make Ray's C++ core re-read this process's auth variables (``RAY_AUTH_MODE``, ``RAY_AUTH_TOKEN[_PATH]``).

    Why: Ray caches its config and the loaded token at first use; a process that imported Ray earlier would
    keep connecting with the old (or no) token after textune sets the variables for a cluster.
    Public replacement: none in Ray 2.60; an ``auth_token`` argument to ``ray.init`` and
    ``JobSubmissionClient`` (or a public ``ray.util.auth.reload()``) would make this unnecessary.
    """
    from ray._raylet import AuthenticationTokenLoader, Config

    Config.initialize("")
    AuthenticationTokenLoader.instance().reset_cache()


def local_cluster_address() -> str | None:
    """The GCS address of the cluster ``ray start`` last started on this machine, or None when none runs.

    Why: ``--address auto`` must be resolved (and its token checked) before ``ray.init``, which on its own
    retries for minutes. Public replacement: none; ``ray.init(address="auto")`` finds it but connects at once.
    """
    from ray._private.services import canonicalize_bootstrap_address

    return canonicalize_bootstrap_address("auto")


def check_gcs_accepts(gcs_address: str) -> None:
    """Open a bare GCS connection to ``gcs_address``; raises ``ray.exceptions.AuthenticationError`` at once
    when the GCS rejects this process's token (other exceptions: no GCS of this Ray version answers there).

    Why: ``ray.init`` retries a rejected token for about 20 s before it fails. Public replacement: none; a
    ``ray.init`` option to fail fast on authentication would do.
    """
    from ray._raylet import GcsClient

    GcsClient(address=gcs_address)


def alive_node_counter(gcs_address: str) -> Callable[[float], int]:
    """A function of one connection to the GCS at ``gcs_address``: called with a timeout in seconds, it returns
    how many nodes the GCS lists as alive, or raises ``ray.exceptions.RpcError`` when the call goes unanswered.

    Why: ``textune cluster up`` waits for its nodes to join without becoming a driver of the cluster.
    Public replacement: ``ray.nodes()`` (needs a driver connection: ``ray.init``) or
    ``ray.util.state.list_nodes`` (needs the dashboard, which starts later than the GCS).
    """
    from ray._raylet import GcsClient
    from ray.core.generated.gcs_pb2 import GcsNodeInfo

    gcs = GcsClient(address=gcs_address)
    return lambda timeout_s: len(gcs.get_all_node_info(timeout=timeout_s, state_filter=GcsNodeInfo.GcsNodeState.ALIVE))


def local_node_resources() -> tuple[float, float]:
    """(CPUs, GPUs) an embedded local Ray would give its one node, detected as Ray detects them (CPUs within
    the process's limits, visible GPUs), without starting Ray.

    Why: a trial too big for this machine is refused before Ray starts. Public replacement: none;
    ``ray.cluster_resources()`` gives the same numbers once Ray has started.
    """
    from ray._private.resource_and_label_spec import ResourceAndLabelSpec

    spec = ResourceAndLabelSpec().resolve(is_head=True, node_ip_address="127.0.0.1")
    return float(spec.num_cpus or 0), float(spec.num_gpus or 0)


@contextlib.contextmanager
def single_machine_ray() -> Iterator[None]:
    """While an embedded Ray starts: keep its node address 127.0.0.1 (it listens on loopback only).

    Why: ``ray.init(_node_ip_address="127.0.0.1")`` alone is not enough: Ray replaces a loopback node address
    with the machine's network address, and its gRPC servers and agents then listen on all interfaces. Ray
    reads the switch at import, so the already-imported module constant is set as well as the variable the
    node's processes inherit; both are restored on exit. Public replacement: none; a ``ray.init`` option to
    bind loopback only (as ``ray start --node-ip-address`` plus this variable does) would do.
    """
    from ray._private import ray_constants

    saved_variable, saved_constant = os.environ.get(SINGLE_MACHINE_VAR), ray_constants.ENABLE_RAY_CLUSTER
    os.environ[SINGLE_MACHINE_VAR] = "0"
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = saved_constant
        if saved_variable is None:
            os.environ.pop(SINGLE_MACHINE_VAR, None)
        else:
            os.environ[SINGLE_MACHINE_VAR] = saved_variable


@dataclass(frozen=True)
class ActorRecord:
    """One actor of the GCS's actor table: ``state`` is Ray's name for it (ALIVE, PENDING_CREATION, ...),
    ``node_id`` the hex id of its node; while the actor is pending it names the owner's node, not where it will run."""

    class_name: str
    state: str
    node_id: str
    serialized_runtime_env: str


def actor_table() -> list[ActorRecord]:
    """Every actor the connected cluster's GCS knows (call after ``ray.init``), over this driver's connection.

    Why: Ray's state API (``ray.util.state.list_actors``) serves the same table through the dashboard, which
    adds a server in between that answered with no actors at all while two trials ran on a busy cluster; the
    raw records also carry each actor's runtime_env, which marks Ray Tune's trial actors.
    Public replacement: ``ray.util.state.list_actors(detail=True)``, once it is reliable under load and shows
    the runtime_env.
    """
    from ray._private import state as gcs_state
    from ray.core.generated.gcs_pb2 import ActorTableData

    records = [
        ActorTableData.FromString(record)
        for record in gcs_state.state._connect_and_get_accessor().get_actor_table(None, None)
    ]
    return [
        ActorRecord(
            class_name=record.class_name,
            state=ActorTableData.ActorState.Name(record.state),
            node_id=record.address.node_id.hex(),
            serialized_runtime_env=record.serialized_runtime_env,
        )
        for record in records
    ]
