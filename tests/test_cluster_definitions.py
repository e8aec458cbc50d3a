"""The shipped cluster definitions: `ray up` files pass Ray's own schema validator, KubeRay manifests are sound."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

CLUSTER_DIR = Path(__file__).resolve().parents[1] / "cluster"
RAY_UP_FILES = ["aws.yaml", "gcp.yaml"]
KUBERAY_FILES = ["raycluster.yaml", "rayjob.yaml"]


def load(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def prepared(name: str) -> dict[str, Any]:
    """The config as `ray up` sees it: merged with the provider's defaults, then validated."""
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = prepare_config(load(CLUSTER_DIR / name))
    validate_config(config)
    return config


@pytest.mark.parametrize("name", RAY_UP_FILES)
def test_ray_up_file_passes_rays_validator(name: str) -> None:
    config = prepared(name)
    head = config["available_node_types"][config["head_node_type"]]
    workers = {k: v for k, v in config["available_node_types"].items() if k != config["head_node_type"]}
    assert head["resources"].get("GPU") == 0  # a CPU head
    assert workers and all(node["min_workers"] == 0 and node["max_workers"] >= 1 for node in workers.values())


def test_ray_validator_catches_a_broken_definition() -> None:
    """The validator the tests rely on is not a no-op."""
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = load(CLUSTER_DIR / "aws.yaml")
    config["available_node_types"]["worker.gpu4"]["min_workres"] = 1
    with pytest.raises(jsonschema.ValidationError):
        validate_config(prepare_config(copy.deepcopy(config)))


@pytest.mark.parametrize("name", RAY_UP_FILES)
def test_ray_up_file_installs_the_project_and_secures_every_node(name: str) -> None:
    config = load(CLUSTER_DIR / name)
    assert config["file_mounts"]["~/textune"] == "."
    assert config["file_mounts"]["~/.ray/auth_token"] == "~/.ray/auth_token"  # token on head and workers
    assert any("pip install" in c and "-c ~/textune/constraints.txt" in c for c in config["setup_commands"])
    assert ".venv" in config["rsync_exclude"] and "experiments" in config["rsync_exclude"]
    head_start = " ".join(config["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in head_start and "0.0.0.0" not in head_start
    for command in (head_start, " ".join(config["worker_start_ray_commands"])):
        assert "RAY_AUTH_MODE=token ray start" in command


def kuberay_cluster_spec(name: str) -> dict[str, Any]:
    manifest = load(CLUSTER_DIR / "kuberay" / name)
    assert manifest["apiVersion"] == "ray.io/v1"
    assert manifest["kind"] == {"raycluster.yaml": "RayCluster", "rayjob.yaml": "RayJob"}[name]
    return manifest["spec"] if manifest["kind"] == "RayCluster" else manifest["spec"]["rayClusterSpec"]


@pytest.mark.parametrize("name", KUBERAY_FILES)
def test_kuberay_manifest_has_token_auth_a_cpu_head_and_gpu_workers(name: str) -> None:
    spec = kuberay_cluster_spec(name)
    assert spec["authOptions"] == {"mode": "token"}
    major, minor, _ = (int(part) for part in spec["rayVersion"].split("."))
    assert (major, minor) >= (2, 52)  # token auth needs Ray 2.52+
    head = spec["headGroupSpec"]
    assert head["rayStartParams"]["num-gpus"] == "0"
    assert head.get("serviceType", "ClusterIP") == "ClusterIP"  # never a public LoadBalancer/NodePort
    for group in spec["workerGroupSpecs"]:
        resources = group["template"]["spec"]["containers"][0]["resources"]
        assert int(resources["limits"]["nvidia.com/gpu"]) >= 2
        assert resources["requests"]["nvidia.com/gpu"] == resources["limits"]["nvidia.com/gpu"]
        assert group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]


def test_rayjob_runs_a_search_with_remote_storage_and_cleans_up() -> None:
    manifest = load(CLUSTER_DIR / "kuberay" / "rayjob.yaml")
    entrypoint = manifest["spec"]["entrypoint"]
    assert entrypoint.startswith("textune run /etc/textune/job.yaml")
    assert "storage=s3://" in entrypoint  # pods die with the cluster; results must not
    assert manifest["spec"]["shutdownAfterJobFinishes"] is True
    head = manifest["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]
    mounts = {m["mountPath"]: m["name"] for m in head["containers"][0]["volumeMounts"]}
    assert {v["name"]: v["configMap"]["name"] for v in head["volumes"]}[mounts["/etc/textune"]] == "textune-job"
