"""What a connected cluster holds: its nodes, their resources, and the trials running on them."""

from __future__ import annotations

import logging
from dataclasses import dataclass

log = logging.getLogger(__name__)

# Ray Tune runs a function trainable in an actor of this class (a Trainable subclass keeps its own name).
# With reuse_actors, an actor waiting between two trials counts as running too.
FUNCTION_TRIAL_ACTOR = "ImplicitFunc"
SHOWN_RESOURCES = ("CPU", "GPU", "memory")


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
    running_trials_unknown_because: str = ""


def summarize_cluster() -> ClusterSummary:
    """Read the connected cluster's state (call inside :func:`cluster.connection.connect`)."""
    import ray

    nodes = {node["NodeID"]: NodeSummary(address=node["NodeManagerAddress"],
                                         is_head="node:__internal_head__" in node["Resources"],
                                         total=dict(node["Resources"]))
             for node in ray.nodes() if node.get("Alive")}
    summary = ClusterSummary(nodes=list(nodes.values()), total=dict(ray.cluster_resources()),
                             available=dict(ray.available_resources()), running_trials=None)
    try:
        from ray._private import state as gcs_state

        # The GCS's actor table, read over this process's own connection. Ray's state API (ray.util.state)
        # serves the same table through the dashboard, which adds a server in between that answered with no
        # actors at all while two trials ran on a busy cluster.
        actors = list(gcs_state.actors(actor_state_name="ALIVE").values())
    except Exception as exc:  # noqa: BLE001 - the count is optional; the rest of the summary stands
        log.debug("no actor table: %s", exc)
        first_line = (str(exc).splitlines() or [""])[0][:200]
        summary.running_trials_unknown_because = f"{type(exc).__name__} {first_line}".strip()
        return summary
    trials = [actor for actor in actors if _is_trial(actor["ActorClassName"])]
    summary.running_trials = len(trials)
    for actor in trials:
        node_id = actor["Address"]["NodeID"]
        if node_id in nodes:
            nodes[node_id].running_trials += 1
    return summary


def _is_trial(class_name: str) -> bool:
    return class_name == FUNCTION_TRIAL_ACTOR or class_name.endswith("Trainable")


def format_summary(summary: ClusterSummary) -> str:
    """A short table for the terminal."""
    lines = [f"{len(summary.nodes)} node(s); free / total: " + ", ".join(
        f"{name} {_amount(name, summary.available.get(name, 0))}/{_amount(name, summary.total.get(name, 0))}"
        for name in SHOWN_RESOURCES)]
    running = (f"unknown (the actor table could not be read: {summary.running_trials_unknown_because})"
               if summary.running_trials is None else summary.running_trials)
    lines.append(f"running trials: {running}")
    lines.append("node                 role    CPU   GPU   trials")
    for node in sorted(summary.nodes, key=lambda n: (not n.is_head, n.address)):
        lines.append(f"{node.address:<20} {'head' if node.is_head else 'worker':<7} {node.total.get('CPU', 0):<5g} "
                     f"{node.total.get('GPU', 0):<5g} {node.running_trials}")
    return "\n".join(lines)


def _amount(name: str, value: float) -> str:
    return f"{value / 2**30:.1f}GiB" if name == "memory" else f"{value:g}"
