"""A real multi-node Ray cluster on one machine: a head and N workers, each a ``ray start --block`` process.

Each node runs in its own process group, so ``down`` stops exactly the processes ``up`` started (a node and
everything it spawned) and nothing else; ``ray stop`` would kill every Ray process on the machine. Token
auth is on, the token lives in a file only its owner can read, and every port (the dashboard included)
is bound to 127.0.0.1.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pydantic import Field

from cluster import auth, ray_private
from cluster.local_state import (
    TOKEN_FILE,
    LocalClusterState,
    NodeProcess,
    read_state,
    remove_state,
    state_dir,
    write_state,
)
from textune.config import StrictModel
from textune.errors import TextuneError

log = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"
STOP_GRACE_S = 5.0


class LocalClusterSpec(StrictModel):
    workers: int = Field(2, ge=0, le=64)
    cpus_per_worker: int = Field(1, ge=0)
    gpus_per_worker: int = Field(0, ge=0, description="logical GPUs: scheduling only, no device behind them")
    head_cpus: int = Field(1, ge=0, description="the head is a CPU node; 0 keeps trials off it")
    object_store_mb: int = Field(256, ge=80, description="per node; Ray's default (30% of RAM) is a lot per node")
    start_timeout_s: float = Field(60.0, gt=0)


def up(spec: LocalClusterSpec, directory: Path | None = None) -> LocalClusterState:
    """Start the head and workers, wait until every node has joined, and record them."""
    existing = read_state(directory)
    if existing is not None:
        if any(_is_running(node) for node in existing.nodes):
            raise TextuneError(
                f"a local cluster is already up at {existing.gcs_address} (record in {state_dir(directory)}).",
                "Use it, stop it with `textune cluster down`, or give another --state-dir.",
            )
        log.warning("removing the record of a local cluster whose processes are gone")
        shutil.rmtree(existing.ray_temp_dir, ignore_errors=True)
    remove_state(directory)  # a stale record, or the token of an `up` that was interrupted
    folder = state_dir(directory)
    (folder / "logs").mkdir(parents=True, exist_ok=True)
    token_path = auth.write_token_file(folder / TOKEN_FILE)
    # Ray's unix sockets live under the temp dir and their paths must stay short (about 100 characters).
    ray_temp_dir = tempfile.mkdtemp(prefix="textune-ray-", dir="/tmp")
    gcs_port, dashboard_port = _free_port(), _free_port()
    state = LocalClusterState(
        gcs_address=f"{LOOPBACK}:{gcs_port}",
        dashboard_url=f"http://{LOOPBACK}:{dashboard_port}",
        token_path=token_path,
        ray_temp_dir=ray_temp_dir,
        nodes=[],
    )
    try:
        head_options = [
            "--head",
            f"--port={gcs_port}",
            "--include-dashboard=true",
            f"--dashboard-host={LOOPBACK}",
            f"--dashboard-port={dashboard_port}",
            f"--ray-client-server-port={_free_port()}",
        ]
        state.nodes.append(_start_node("head", head_options, spec.head_cpus, 0, spec, state, folder))
        write_state(state, directory)
        _wait_for_port(gcs_port, state, spec.start_timeout_s)
        _wait_for_nodes(state, spec.start_timeout_s)
        # One node at a time: several raylets registering at once on a busy small machine can outlast
        # Ray's own 30 s registration timeout.
        for index in range(spec.workers):
            state.nodes.append(
                _start_node(
                    f"worker-{index}",
                    [f"--address={state.gcs_address}"],
                    spec.cpus_per_worker,
                    spec.gpus_per_worker,
                    spec,
                    state,
                    folder,
                )
            )
            write_state(state, directory)
            _wait_for_nodes(state, spec.start_timeout_s)
    except BaseException:
        _stop_nodes(state.nodes)
        _remove_cluster_files(state, directory)
        raise
    return state


def down(directory: Path | None = None) -> LocalClusterState:
    """Stop the recorded cluster's node process groups (workers first) and remove its files."""
    state = read_state(directory)
    if state is None:
        raise TextuneError(
            f"no local cluster is up (no record in {state_dir(directory)}).",
            "Start one with `textune cluster up`, or pass the --state-dir it was started with.",
        )
    _stop_nodes(state.nodes)
    _remove_cluster_files(state, directory)
    return state


def node_environment(token_path: Path) -> dict[str, str]:
    """The environment for a process of the cluster: the token by file, never an inline one inherited."""
    env = {key: value for key, value in os.environ.items() if key not in (auth.TOKEN_VAR, "RAY_ADDRESS")}
    env.update(auth.token_environment(token_path))
    env["RAY_USAGE_STATS_ENABLED"] = "0"
    # Job entrypoints say `python`: make it this interpreter, the one whose packages the nodes run.
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


def _start_node(
    name: str,
    role_options: list[str],
    num_cpus: int,
    num_gpus: int,
    spec: LocalClusterSpec,
    state: LocalClusterState,
    folder: Path,
) -> NodeProcess:
    ray_cli = Path(sys.executable).with_name("ray")
    # A temp dir per node: nodes sharing one would share their runtime_env caches, and a worker node
    # cleaning up a job's py_modules would delete them under the driver on the head.
    node_temp_dir = Path(state.ray_temp_dir) / name
    command = [
        str(ray_cli),
        "start",
        "--block",
        *role_options,
        f"--node-ip-address={LOOPBACK}",
        f"--num-cpus={num_cpus}",
        f"--num-gpus={num_gpus}",
        f"--temp-dir={node_temp_dir}",
        f"--object-store-memory={spec.object_store_mb * 1024 * 1024}",
        "--disable-usage-stats",
        # Fixed default ports would collide between nodes on one machine.
        f"--dashboard-agent-listen-port={_free_port()}",
        f"--dashboard-agent-grpc-port={_free_port()}",
        f"--metrics-export-port={_free_port()}",
        f"--runtime-env-agent-port={_free_port()}",
    ]
    log_file = folder / "logs" / f"{name}.log"
    with open(log_file, "ab") as output:
        process = subprocess.Popen(
            command,
            stdout=output,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=node_environment(state.token_path),
            start_new_session=True,
        )
    log.info("started %s (pid %d), log %s", name, process.pid, log_file)
    return NodeProcess(
        role="head" if name == "head" else "worker",
        pid=process.pid,
        start_time=_start_time(process.pid),
        num_cpus=num_cpus,
        num_gpus=num_gpus,
        log_file=str(log_file),
    )


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        return probe.getsockname()[1]


def _wait_for_port(port: int, state: LocalClusterState, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        _check_nodes_alive(state)
        try:
            with socket.create_connection((LOOPBACK, port), timeout=1):
                return
        except OSError:
            time.sleep(0.3)
    raise TextuneError(
        f"the head node did not open {LOOPBACK}:{port} within {timeout_s:g} s.",
        f"See its log: {state.nodes[0].log_file}.",
    )


def _wait_for_nodes(state: LocalClusterState, timeout_s: float) -> None:
    """Wait until the head's GCS lists every started node as alive (this process takes the cluster's token)."""
    from ray.exceptions import RpcError

    auth.use_token_file(state.token_path)
    alive_node_count = ray_private.alive_node_counter(state.gcs_address)
    deadline = time.monotonic() + timeout_s
    alive = 0
    while time.monotonic() < deadline:
        _check_nodes_alive(state)
        try:
            alive = alive_node_count(5)
        except RpcError:  # a GCS busy starting nodes on a loaded machine can miss one 5 s call: ask again
            continue
        if alive >= len(state.nodes):
            return
        time.sleep(0.5)
    raise TextuneError(
        f"only {alive} of {len(state.nodes)} nodes joined within {timeout_s:g} s.",
        f"See the node logs in {Path(state.nodes[0].log_file).parent}; on a small machine, start fewer workers.",
    )


def _check_nodes_alive(state: LocalClusterState) -> None:
    for node in state.nodes:
        if not _is_running(node):
            raise TextuneError(
                f"the {node.role} node (pid {node.pid}) exited while starting: {_last_error(Path(node.log_file))}",
                f"The full log is {node.log_file}.",
            )


def _last_error(log_file: Path) -> str:
    """The line of a node's log that says why it stopped (Ray's last exception), else its last line."""
    lines = [line.strip() for line in log_file.read_text(errors="replace").splitlines() if line.strip()]
    errors = [line for line in lines if "Error" in line or "Exception" in line]
    return (errors or lines or ["(empty log)"])[-1][:500]


def _proc_stat(pid: int) -> list[str] | None:
    """The fields of ``/proc/PID/stat`` after the command name (state, ppid, pgrp, ...), or None."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return None


def _start_time(pid: int) -> int:
    fields = _proc_stat(pid)
    return int(fields[19]) if fields else -1  # starttime, in clock ticks since boot


def _is_running(node: NodeProcess) -> bool:
    """True while the node's process runs; its recorded start time tells a recycled pid apart."""
    fields = _proc_stat(node.pid)
    return fields is not None and fields[0] != "Z" and int(fields[19]) == node.start_time


def _stop_nodes(nodes: list[NodeProcess]) -> None:
    """Stop the workers' process groups, then the head's: SIGTERM, and SIGKILL what outlives the grace time.

    Workers go first, while the head's GCS still answers their goodbye; a raylet whose GCS is gone can take
    a long time over a graceful exit. The cluster holds nothing that must outlive it, so the grace is short.
    """
    running = [node for node in nodes if _is_running(node)]
    for phase in ([n for n in running if n.role == "worker"], [n for n in running if n.role == "head"]):
        groups = [node.pid for node in phase]
        for group in groups:
            _signal_group(group, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S
        while time.monotonic() < deadline and any(_group_alive(group) for group in groups):
            time.sleep(0.2)
        for group in groups:
            if _group_alive(group):
                log.info("process group %d still runs %g s after SIGTERM; killing it", group, STOP_GRACE_S)
                _signal_group(group, signal.SIGKILL)
        for group in groups:
            _reap(group)


def _signal_group(group: int, signum: int) -> None:
    try:
        os.killpg(group, signum)
    except ProcessLookupError:
        pass


def _group_alive(group: int) -> bool:
    """True while a process of the group is still running (zombies waiting for their parent do not count)."""
    _reap(group)
    for entry in Path("/proc").glob("[0-9]*"):
        fields = _proc_stat(int(entry.name))
        if fields is not None and int(fields[2]) == group and fields[0] != "Z":
            return True
    return False


def _reap(pid: int) -> None:
    """Collect the exit status when this process is the node's parent (``up`` and ``down`` in one process)."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def _remove_cluster_files(state: LocalClusterState, directory: Path | None) -> None:
    shutil.rmtree(state.ray_temp_dir, ignore_errors=True)
    remove_state(directory)
