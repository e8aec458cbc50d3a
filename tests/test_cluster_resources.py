"""Trial slots per cluster shape, the no-fit error, and the pending-trial limit (plain data, no Ray)."""

from __future__ import annotations

import pytest

from cluster.resources import PENDING_TRIALS_VAR, check_trial_fits, cluster_trial_slots, raise_pending_trial_limit
from textune.errors import TextuneError

HEAD = {"CPU": 2.0}


def workers(count: int, cpus: float, gpus: float) -> list[dict[str, float]]:
    return [{"CPU": cpus, "GPU": gpus} for _ in range(count)]


@pytest.mark.parametrize(
    "nodes, gpus, cpus, slots",
    [
        ([HEAD, *workers(3, 4, 4)], 1, 1, 12),  # 3 workers x 4 GPUs: 12 one-GPU trials; the head takes none
        ([HEAD, *workers(4, 8, 8)], 1, 1, 32),
        ([HEAD, *workers(2, 4, 4)], 3, 1, 2),  # a trial lives on one node: 3 GPUs fit once per 4-GPU node
        ([HEAD, *workers(2, 4, 4)], 0.5, 1, 8),  # half-GPU trials are limited by the 4 CPUs per node
        ([HEAD, *workers(2, 8, 4)], 0.5, 1, 16),
        ([HEAD, *workers(2, 2, 0)], 0, 1, 6),  # CPU-only trials use the head too
    ],
)
def test_trial_slots_count_whole_trials_per_node(
    nodes: list[dict[str, float]], gpus: float, cpus: float, slots: int
) -> None:
    assert cluster_trial_slots(gpus, cpus, nodes) == slots


@pytest.mark.parametrize(
    "nodes, gpus, fragment",
    [
        ([HEAD, *workers(2, 4, 0)], 1, "the largest node has 0 GPU(s)"),  # a cluster without GPUs
        ([HEAD, *workers(2, 4, 4)], 5, "the largest node has 4 GPU(s)"),
    ],
)
def test_a_trial_that_fits_no_node_is_refused(nodes: list[dict[str, float]], gpus: float, fragment: str) -> None:
    with pytest.raises(TextuneError) as info:
        check_trial_fits(gpus, 1, nodes)
    assert fragment in info.value.paragraph() and "resources.gpu" in info.value.paragraph()


def test_pending_trial_limit_is_raised_unless_the_user_chose_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(PENDING_TRIALS_VAR, raising=False)
    assert raise_pending_trial_limit(12) == "12"
    monkeypatch.setenv(PENDING_TRIALS_VAR, "3")
    assert raise_pending_trial_limit(12) == "3"
