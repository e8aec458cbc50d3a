"""Security: what textune refuses to load, and what it listens on.

Tested elsewhere, and listed with these in docs/reliability.md: checkpoints load with
``torch.load(weights_only=True)`` (tests/test_models_checkpoints.py, a planted pickle); experiment names cannot
leave the storage root (tests/test_bad_input_battery.py, the ``name-*`` rows); a client without the local
cluster's token is refused (tests/test_cluster_local.py).

The servers are checked in a network namespace of their own that has, besides loopback, an interface with a
network address and a default route (both ends of a veth pair stay inside, so nothing leaves it): what a
machine on a network looks like. Ray binds the machine's network address when it finds one, so only there does
"listens on 127.0.0.1" mean anything. Every listening socket of that namespace belongs to the processes the
test started, and each must be bound to a loopback address.
"""

from __future__ import annotations

import ipaddress
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO_ROOT, assert_user_error, run_textune
from support.jobs import tiny_job, write_job

pytestmark = pytest.mark.timeout(240)

NETWORK_ADDRESS = "198.51.100.7"  # TEST-NET-2: never routed anywhere
WITH_NETWORK_INTERFACE = (
    "ip link set lo up && ip link add ext0 type veth peer name ext1 && "
    f"ip addr add {NETWORK_ADDRESS}/24 dev ext0 && ip link set ext0 up && ip link set ext1 up && "
    "ip route add default dev ext0"
)
LISTEN_STATE = "0A"  # TCP_LISTEN in /proc/net/tcp


def in_networked_namespace(*command: str) -> list[str]:
    """``command`` run in a new network namespace with loopback and a network interface (a user namespace too
    when not root, as `make test` does)."""
    unshare = ["unshare", "-n"] if os.getuid() == 0 else ["unshare", "-rn"]
    return [*unshare, "sh", "-c", f'{WITH_NETWORK_INTERFACE} && exec "$0" "$@"', *command]


def textune_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "tune_jobs.cli.main", *args]


def listening_sockets(pid: int) -> set[tuple[str, int]]:
    """(bind address, port) of every listening TCP socket in the network namespace of process ``pid``."""
    found = set()
    for table in ("tcp", "tcp6"):
        try:
            rows = Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
        except (FileNotFoundError, ProcessLookupError):  # the process has ended
            continue
        for row in rows:
            fields = row.split()
            if fields[3] != LISTEN_STATE:
                continue
            address_hex, port_hex = fields[1].split(":")
            packed = bytes.fromhex(address_hex)
            # The kernel prints the address as 32-bit words in host (little-endian) byte order.
            packed = b"".join(packed[i : i + 4][::-1] for i in range(0, len(packed), 4))
            found.add((str(ipaddress.ip_address(packed)), int(port_hex, 16)))
    return found


def is_loopback(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    mapped = getattr(ip, "ipv4_mapped", None)  # ::ffff:127.0.0.1, an IPv6 socket bound to 127.0.0.1
    return ip.is_loopback or (mapped is not None and mapped.is_loopback)


def watch_listening(
    process: subprocess.Popen[str], timeout_s: float, awaited: tuple[str, int] | None = None
) -> set[tuple[str, int]]:
    """Every socket that listened in ``process``'s namespace while it ran, or until ``awaited`` listened."""
    seen: set[tuple[str, int]] = set()
    deadline = time.monotonic() + timeout_s
    while process.poll() is None and time.monotonic() < deadline and awaited not in seen:
        seen |= listening_sockets(process.pid)
        time.sleep(0.2)
    return seen


def write_text(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


# Config files (job specs, training configs) share one reader; a saved spec comes from storage through another.
@pytest.mark.parametrize("where", ["job spec", "saved job spec"])
@pytest.mark.slow
def test_yaml_tags_that_would_run_code_are_refused_and_nothing_runs(tmp_path: Path, where: str) -> None:
    marker = tmp_path / "code-ran"
    document = f'name: !!python/object/apply:os.system ["touch {marker}"]\n'
    if where == "job spec":
        target = write_text(tmp_path / "job.yaml", document)
        result = run_textune("run", str(target))
    else:  # an experiment directory someone else wrote
        target = write_text(tmp_path / "experiment" / "textune-job.yaml", document)
        result = run_textune("resume", str(target.parent))
    assert_user_error(result, str(target), "holds a YAML tag that is not plain data", "python/object/apply")
    assert not marker.exists()


@pytest.mark.slow
def test_embedded_search_listens_on_loopback_only_and_keeps_its_token_private(tmp_path: Path) -> None:
    """`textune run` on a machine with a network address: Ray's GCS, raylet, workers and agents bind
    127.0.0.1, and the run's auth token is its own, not one Ray leaves in ~/.ray for every user to read."""
    home = tmp_path / "home"
    home.mkdir()
    job = write_job(tmp_path / "job.yaml", tiny_job(tmp_path / "runs", num_samples=1))
    log = tmp_path / "run.log"
    # A user who set no auth: variables an earlier test's cluster left in this process must not reach the run.
    env = {name: value for name, value in os.environ.items() if not name.startswith("RAY_AUTH_")}
    with open(log, "w") as output:
        process = subprocess.Popen(
            in_networked_namespace(*textune_command("run", str(job))),
            cwd=REPO_ROOT,
            env={**env, "HOME": str(home)},
            stdout=output,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
    try:
        seen = watch_listening(process, timeout_s=200)
        assert process.wait(timeout=60) == 0, log.read_text()[-3000:]
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    # GCS, raylet (two ports) and a trial worker at the least.
    assert len(seen) >= 4, seen
    assert all(is_loopback(address) for address, _ in seen), sorted(seen)
    assert not (home / ".ray" / "auth_token").exists()


@pytest.mark.slow
def test_tensorboard_listens_on_loopback_only(tmp_path: Path) -> None:
    experiment = write_text(tmp_path / "experiment" / "textune-job.yaml", "name: experiment\n").parent
    process = subprocess.Popen(
        in_networked_namespace(*textune_command("tensorboard", str(experiment))),
        cwd=REPO_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )  # its own group: TensorBoard is a child of textune
    try:
        seen = watch_listening(process, timeout_s=120, awaited=("127.0.0.1", 6006))
    finally:
        if process.poll() is None:  # textune waits for TensorBoard, so a running textune means a running server
            os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
    assert ("127.0.0.1", 6006) in seen, (seen, process.stderr.read()[-2000:] if process.stderr else "")
    assert all(is_loopback(address) for address, _ in seen), sorted(seen)
