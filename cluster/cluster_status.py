"""What a connected cluster holds: its nodes, their resources, and the trials running on them."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from cluster.ray_private import ActorRecord, actor_table

log = logging.getLogger(__name__)

# Ray Tune runs a function trainable in an actor of this class (a Trainable subclass keeps its own name).
# With reuse_actors, an actor waiting between two trials counts as running too.
FUNCTION_TRIAL_ACTOR = "ImplicitFunc"
# A trainable class may have any name (textune's own subclasses ImplicitFunc), but Ray Tune 2.60 starts every
# trial actor with this variable in its runtime_env (ray.tune.execution.class_cache.DEFAULT_ENV_VARS).
TUNE_ACTOR_MARK = '"PL_DISABLE_FORK"'
SHOWN_RESOURCES = ("CPU", "GPU", "memory")
# A trial's placement group holds its CPUs and GPUs from before its actor exists until after it dies, and
# the actor is ALIVE only once its worker process has started, imported torch and built the trainable: for
# seconds on an idle machine, for minutes on a loaded one, and again after a worker was killed (Ray's memory
# monitor does that) and Tune starts the trial anew. Counting ALIVE actors alone printed "running trials: 0"
# beside the resources those trials held; a trial whose actor is not up yet counts as starting.
RUNNING = "ALIVE"
STARTING = ("PENDING_CREATION", "RESTARTING")
# Only an ALIVE actor's address names its node. Until then the GCS's record holds the raylet it asked for a
# worker, which is the owner's (the driver's) node before Ray forwards the lease to where the actor fits, and
# a restarting actor's old node: a starting trial is counted for the cluster, on no node.


@dataclass
class NodeSummary:
    address: str
    is_head: bool
    total: dict[str, float]
    running_trials: int = 0


@dataclass
class ClusterSummary:
    nodes: list[NodeSummary]
    total: dict[str, float]
    available: dict[str, float]
    running_trials: int | None  # None when the actor table could not be read
    starting_trials: int = 0  # on no node yet: see STARTING
    running_trials_unknown_because: str = ""


def summarize_cluster() -> ClusterSummary:
    """Read the connected cluster's state (call inside :func:`cluster.connection.connect`)."""
    import ray

    nodes = {
        node["NodeID"]: NodeSummary(
            address=node["NodeManagerAddress"],
            is_head="node:__internal_head__" in node["Resources"],
            total=dict(node["Resources"]),
        )
        for node in ray.nodes()
        if node.get("Alive")
    }
    summary = ClusterSummary(
        nodes=list(nodes.values()),
        total=dict(ray.cluster_resources()),
        available=dict(ray.available_resources()),
        running_trials=None,
    )
    try:
        actors = actor_table()  # the GCS's own table: why not Ray's public state API, see there
    except Exception as exc:  # noqa: BLE001 - the count is optional; the rest of the summary stands
        log.debug("no actor table: %s", exc)
        first_line = (str(exc).splitlines() or [""])[0][:200]
        summary.running_trials_unknown_because = f"{type(exc).__name__} {first_line}".strip()
        return summary
    summary.running_trials = 0
    for actor in actors:
        if not _is_trial(actor) or (actor.state != RUNNING and actor.state not in STARTING):
            continue
        if actor.state != RUNNING:
            summary.starting_trials += 1
            continue
        summary.running_trials += 1
        node = nodes.get(actor.node_id)
        if node is not None:
            node.running_trials += 1
    return summary


def _is_trial(actor: ActorRecord) -> bool:
    """A Ray Tune trial actor."""
    name = actor.class_name
    return name == FUNCTION_TRIAL_ACTOR or name.endswith("Trainable") or TUNE_ACTOR_MARK in actor.serialized_runtime_env


def format_summary(summary: ClusterSummary) -> str:
    """A short table for the terminal."""
    lines = [
        f"{len(summary.nodes)} node(s); free / total: "
        + ", ".join(
            f"{name} {_amount(name, summary.available.get(name, 0))}/{_amount(name, summary.total.get(name, 0))}"
            for name in SHOWN_RESOURCES
        )
    ]
    if summary.running_trials is None:
        running = f"unknown (the actor table could not be read: {summary.running_trials_unknown_because})"
    elif summary.starting_trials:
        running = (
            f"{summary.running_trials} (+{summary.starting_trials} starting: their worker process not up "
            "yet, on no node below until it is)"
        )
    else:
        running = str(summary.running_trials)
    lines.append(f"running trials: {running}")
    lines.append("node                 role    CPU   GPU   trials")
    for node in sorted(summary.nodes, key=lambda n: (not n.is_head, n.address)):
        lines.append(
            f"{node.address:<20} {'head' if node.is_head else 'worker':<7} {node.total.get('CPU', 0):<5g} "
            f"{node.total.get('GPU', 0):<5g} {node.running_trials}"
        )
    return "\n".join(lines)


def _amount(name: str, value: float) -> str:
    return f"{value / 2**30:.1f}GiB" if name == "memory" else f"{value:g}"
