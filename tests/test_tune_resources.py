"""Trial placement on a real multi-node Ray cluster with logical GPUs (a CPU-only head and 3 workers x 4 GPUs,
no real CUDA)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from support.jobs import tiny_job
from textune.errors import TextuneError
from tune_jobs.finish import finish_experiment
from tune_jobs.runner import run_job
from tune_jobs.spec import JobSpec

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

WORKERS, GPUS_PER_WORKER = 3, 4


@pytest.fixture(scope="module")
def gpu_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """A CPU-only head and 3 worker nodes, each with 4 logical GPUs and 4 CPUs, and a driver connected to it."""
    from ray.cluster_utils import Cluster

    from cluster.connection import connect

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RAY_USAGE_STATS_ENABLED", "0")
        cluster = Cluster(
            initialize_head=True, head_node_args={"num_cpus": 1, "num_gpus": 0, "include_dashboard": False}
        )
        try:
            for _ in range(WORKERS):
                cluster.add_node(num_cpus=GPUS_PER_WORKER, num_gpus=GPUS_PER_WORKER)
            cluster.wait_for_nodes()
            with connect(cluster.address, log_to_driver=False):  # as `textune run --address HOST:PORT` connects
                yield
        finally:
            cluster.shutdown()


def test_each_trial_gets_its_own_gpu_and_the_cluster_fills(gpu_cluster: None, tmp_path: Path) -> None:
    from cluster.resources import cluster_trial_slots

    slots = WORKERS * GPUS_PER_WORKER
    # Without max_concurrent_trials, a search runs as many trials at once as the cluster has slots: 12.
    assert cluster_trial_slots(gpus_per_trial=1, cpus_per_trial=1) == slots
    job = tiny_job(
        tmp_path,
        name="gpus",
        num_samples=slots,
        max_concurrent_trials=None,
        resources={"cpu": 1, "gpu": 1},
        budget={"max_tokens": 1024, "eval_every_tokens": 1024},
    )
    spec = JobSpec.model_validate(job)
    results = finish_experiment(run_job(spec), spec).trials
    assert (results["status"] == "completed").all(), results[["status"]]
    placements = set(zip(results["node_id"], results["gpu_ids"], strict=True))
    # 12 trials on 12 distinct (node, GPU) pairs: each saw exactly one GPU, and no two shared one (with actor
    # reuse on, trials run one after another would have shared a slot).
    assert len(placements) == slots
    assert all(len(gpus.split(",")) == 1 for gpus in results["gpu_ids"])
    assert results["node_id"].nunique() == WORKERS


def test_asking_for_more_gpus_than_any_node_has_fails_fast(gpu_cluster: None, tmp_path: Path) -> None:
    spec = JobSpec.model_validate(tiny_job(tmp_path, name="too-big", resources={"cpu": 1, "gpu": 5}))
    with pytest.raises(TextuneError) as info:
        run_job(spec)
    assert "needing 5 GPU(s)" in info.value.paragraph() and "has 4 GPU(s)" in info.value.paragraph()


def test_fractional_gpus_pack_trials_onto_shared_gpus(gpu_cluster: None, tmp_path: Path) -> None:
    # More quarter-GPU trials than GPU nodes: unless Ray packs them, each would get a GPU of its own.
    trials = WORKERS + 1
    job = tiny_job(
        tmp_path,
        name="fractional",
        num_samples=trials,
        max_concurrent_trials=None,
        resources={"cpu": 0.5, "gpu": 0.25},
        budget={"max_tokens": 1024, "eval_every_tokens": 1024},
    )
    spec = JobSpec.model_validate(job)
    results = finish_experiment(run_job(spec), spec).trials
    assert (results["status"] == "completed").all(), results[["status"]]
    assert all(len(gpus.split(",")) == 1 for gpus in results["gpu_ids"])
    per_gpu = results.groupby(["node_id", "gpu_ids"]).size()
    # A quarter-GPU trial shares its GPU: fewer (node, GPU) pairs were used than there were trials.
    assert len(per_gpu) < trials and per_gpu.max() > 1, per_gpu
