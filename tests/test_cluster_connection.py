"""Resolving --address and the embedded local Ray that `connect(None)` starts (real Ray, loopback only)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from cluster import auth, ray_private
from cluster.connection import connect, resolve_address
from cluster.local_state import LocalClusterState, NodeProcess, write_state
from conftest import assert_user_error, run_textune
from support.jobs import tiny_job
from textune.errors import TextuneError

pytestmark = pytest.mark.timeout(90)


@pytest.fixture
def no_ray_address(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("RAY_ADDRESS", auth.TOKEN_VAR, auth.TOKEN_PATH_VAR):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize(
    "given, gcs_address, ray_client",
    [
        (None, None, False),
        ("10.0.0.5:6379", "10.0.0.5:6379", False),
        ("ray://head.internal:10001", "head.internal:10001", True),
        ("[::1]:6379", "[::1]:6379", False),
    ],
)
def test_addresses_resolve(no_ray_address: None, given: str | None, gcs_address: str | None, ray_client: bool) -> None:
    resolved = resolve_address(given)
    assert (resolved.gcs_address, resolved.ray_client) == (gcs_address, ray_client)
    assert resolved.init_address == ("local" if given is None else given)


def test_ray_address_variable_is_used_without_an_address(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAY_ADDRESS", "10.1.2.3:6379")
    assert resolve_address(None).gcs_address == "10.1.2.3:6379"


@pytest.mark.parametrize(
    "given, gcs_address, takes_token",
    [
        ("auto", "127.0.0.1:41234", True),
        ("127.0.0.1:41234", "127.0.0.1:41234", True),
        ("localhost:41234", "localhost:41234", True),
        ("http://127.0.0.1:41235", "127.0.0.1:41234", True),  # the cluster's Jobs API URL stands for the cluster
        ("127.0.0.1:41299", "127.0.0.1:41299", False),  # another cluster: its token is the user's business
    ],
)
def test_the_recorded_local_cluster_s_addresses_bring_its_token(
    no_ray_address: None, isolated_cache: Path, given: str, gcs_address: str, takes_token: bool
) -> None:
    token = auth.write_token_file(isolated_cache / "cluster" / "auth_token")
    write_state(
        LocalClusterState(
            gcs_address="127.0.0.1:41234",
            dashboard_url="http://127.0.0.1:41235",
            token_path=token,
            ray_temp_dir="/tmp/unused",
            nodes=[NodeProcess(role="head", pid=1, start_time=0, num_cpus=1, num_gpus=0, log_file="head.log")],
        )
    )
    with pytest.MonkeyPatch.context() as patch:
        # Restored when the block ends, with the variables resolve_address sets for the cluster's token.
        patch.setenv(auth.MODE_VAR, "")
        patch.setenv(auth.TOKEN_PATH_VAR, "")
        assert resolve_address(given).gcs_address == gcs_address
        assert (
            auth.token_source() == f"{auth.TOKEN_PATH_VAR}={token}"
            if takes_token
            else os.environ[auth.TOKEN_PATH_VAR] == ""
        )
    ray_private.reload_auth_config()  # later tests in this process see the restored variables


@pytest.mark.parametrize(
    "address, fragment",
    [
        ("http://127.0.0.1:99999", "Port out of range"),
        ("http://127.0.0.1:port", "Port could not be cast"),
        ("http://[::1", "Invalid IPv6 URL"),
        ("http://", "it names no host"),
        ("http://127.0.0.1:0", "port 0"),
        ("127.0.0.1:8265", "does not start with http:// or https://"),
    ],
)
@pytest.mark.parametrize("command", ["submit", "jobs"])
@pytest.mark.slow
def test_a_malformed_jobs_api_url_is_one_paragraph(command: str, address: str, fragment: str, tmp_path: Path) -> None:
    job = tmp_path / "job.yaml"
    job.write_text(yaml.safe_dump(tiny_job(tmp_path / "storage")), encoding="utf-8")
    args = ["submit", str(job)] if command == "submit" else ["jobs", "list"]
    result = run_textune(*args, "--address", address, timeout=60)
    assert_user_error(result, f'--address "{address}" is not a Jobs API URL', fragment, "1 to 65535")
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "storage").exists()


def test_a_token_file_is_private_and_never_overwritten(tmp_path: Path) -> None:
    path = auth.write_token_file(tmp_path / "token")
    first = path.read_text()
    assert len(first) == 64 and path.stat().st_mode & 0o777 == 0o600
    with pytest.raises(FileExistsError):
        auth.write_token_file(path)
    assert path.read_text() == first


@pytest.mark.slow
def test_embedded_local_ray_is_loopback_only_and_shut_down_even_when_the_body_fails(no_ray_address: None) -> None:
    import ray

    with pytest.raises(TextuneError, match="the search failed"), connect(None, num_cpus=1, num_gpus=0) as resolved:
        assert resolved.gcs_address is None
        nodes = ray.nodes()
        assert [node["NodeManagerAddress"] for node in nodes] == ["127.0.0.1"]
        assert ray.cluster_resources()["CPU"] == 1
        with connect("10.9.9.9:6379"):  # already connected: reused, never a second ray.init
            assert ray.nodes()[0]["NodeID"] == nodes[0]["NodeID"]
        assert ray.is_initialized()  # the inner block did not shut down what it did not start
        raise TextuneError("the search failed")
    assert not ray.is_initialized()
