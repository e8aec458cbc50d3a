"""How many trials a connected cluster runs at once, and making Ray Tune fill it quickly.

A trial lives on one node, so slots are counted per node (4 GPUs on each of two nodes hold two 3-GPU
trials, not two and two thirds) and summed. Call these after :func:`cluster.connection.connect` (or give
the nodes: :func:`this_machine_resources` is the node an embedded Ray will have).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping
from typing import Any

from cluster import ray_private
from textune.errors import TextuneError

PENDING_TRIALS_VAR = "TUNE_MAX_PENDING_TRIALS_PG"


def alive_node_resources() -> list[dict[str, float]]:
    """Total resources of each alive node of the connected cluster."""
    import ray

    return [dict(node["Resources"]) for node in ray.nodes() if node.get("Alive")]


def this_machine_resources() -> dict[str, float]:
    """The resources an embedded local Ray would give its one node, found as Ray finds them (CPUs within the
    process's limits, visible GPUs), without starting it."""
    cpus, gpus = ray_private.local_node_resources()
    return {"CPU": cpus, "GPU": gpus}


def trials_per_node(resources: Mapping[str, float], gpus_per_trial: float, cpus_per_trial: float) -> int:
    """Trials of the given size that fit on one node with ``resources``."""
    limits = [
        math.floor(resources.get(name, 0.0) / need + 1e-9)
        for name, need in (("GPU", gpus_per_trial), ("CPU", cpus_per_trial))
        if need > 0
    ]
    return min(limits) if limits else 0


def cluster_trial_slots(
    gpus_per_trial: float, cpus_per_trial: float, nodes: Iterable[Mapping[str, float]] | None = None
) -> int:
    """Trials that run at once on the cluster: the default for ``max_concurrent_trials``."""
    nodes = alive_node_resources() if nodes is None else nodes
    return sum(trials_per_node(node, gpus_per_trial, cpus_per_trial) for node in nodes)


def check_trial_fits(
    gpus_per_trial: float, cpus_per_trial: float, nodes: Iterable[Mapping[str, float]] | None = None
) -> None:
    """Raise a TextuneError when no node can host one trial (Ray would keep it pending forever)."""
    nodes = list(alive_node_resources() if nodes is None else nodes)
    if cluster_trial_slots(gpus_per_trial, cpus_per_trial, nodes) > 0:
        return
    largest = _largest(nodes)
    raise TextuneError(
        f"no node of the cluster can run a trial needing {gpus_per_trial:g} GPU(s) and {cpus_per_trial:g} "
        f"CPU(s): the largest node has {largest.get('GPU', 0):g} GPU(s) and {largest.get('CPU', 0):g} CPU(s).",
        "Lower resources.gpu / resources.cpu in the job spec, or connect to a cluster "
        "with GPU nodes (`textune cluster up --gpus-per-worker N` declares logical GPUs for a try-out).",
    )


def _largest(nodes: list[Mapping[str, float]]) -> Mapping[str, Any]:
    return max(nodes, key=lambda node: (node.get("GPU", 0.0), node.get("CPU", 0.0)), default={})


def raise_pending_trial_limit(slots: int) -> str:
    """Let Ray Tune keep ``slots`` trials pending (unless the user chose a limit); returns the setting in force.

    For searchers other than random search Ray Tune keeps a single pending trial unless told otherwise, so a
    cluster of 32 GPUs would start one trial per scheduling round. Ray reads the variable when the Tuner runs.
    """
    if not os.environ.get(PENDING_TRIALS_VAR):
        os.environ[PENDING_TRIALS_VAR] = str(max(1, slots))
    return os.environ[PENDING_TRIALS_VAR]
