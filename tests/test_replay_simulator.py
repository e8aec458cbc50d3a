"""The replay simulator on hand-built tables: event order on the simulated clock, W workers, trial-start
overhead, seeded reproducibility, ASHA's stop rule and speed. The simulator needs no Ray cluster, and none
is started here."""

from __future__ import annotations

import numpy as np
import pytest

from support.replay import EVAL_EVERY, hand_table, smooth_table
from tune_jobs.replay.lookup import CurveLookup
from tune_jobs.replay.simulator import Overhead, simulate
from tune_jobs.replay.strategies import Strategy, strategy_spec

A, B, C = 1e-3, 2e-3, 3e-3
# Three configurations, two evaluations each; wall seconds per evaluation 1, 5 and 2.
TIMED = [
    ({"lr": A}, 0, [3.0, 2.0], [1.0, 1.0]),
    ({"lr": B}, 0, [2.5, 1.5], [5.0, 5.0]),
    ({"lr": C}, 0, [2.8, 1.8], [2.0, 2.0]),
]
OVERHEAD = Overhead(slot_start_s=10.0, trial_start_s=1.0)


def grid_fifo(table, workers: int):
    spec = strategy_spec(table, Strategy("grid", "fifo"), seed=0, trials=3)
    return simulate(spec, CurveLookup(table), workers, overhead=OVERHEAD)


def test_events_follow_the_simulated_clock_with_start_overheads() -> None:
    """Two workers: A and B start after a cold slot (10 s) and the trial switch (1 s); C takes A's worker when A
    ends at 13 s and pays only the switch. B's and C's first results tie at 16 s: B's was scheduled first."""
    search = grid_fifo(hand_table({"lr": {"grid": [A, B, C]}}, TIMED), workers=2)
    events = search.evaluations
    assert [
        (round(lr, 6), tokens, clock, worker)
        for lr, tokens, clock, worker in zip(
            events["trial_id"].map({"sim_00000": A, "sim_00001": B, "sim_00002": C}),
            events["tokens"],
            events["clock_s"],
            events["worker"],
            strict=True,
        )
    ] == [
        (A, 1024, 12.0, 0),
        (A, 2048, 13.0, 0),
        (B, 1024, 16.0, 1),
        (C, 1024, 16.0, 0),
        (C, 2048, 18.0, 0),
        (B, 2048, 21.0, 1),
    ]
    assert search.makespan_s == 21.0
    # Device time: two cold starts (11 s each), one switch (1 s) and 16 s of evaluations.
    assert search.progress["device_s"].iloc[-1] == 39.0
    assert search.progress["tokens"].iloc[-1] == 6 * EVAL_EVERY
    assert list(search.progress["best"]) == [3.0, 2.0, 2.0, 2.0, 1.8, 1.5]
    assert set(search.trials["status"]) == {"completed"} and search.extrapolated_share == 0.0


def test_more_workers_shorten_the_search_until_every_trial_has_one() -> None:
    table = hand_table({"lr": {"grid": [A, B, C]}}, TIMED)
    makespans = [grid_fifo(table, workers).makespan_s for workers in (1, 2, 3, 8)]
    # One worker: 11 + 2, then 1 + 10, then 1 + 4 s; three or more: the longest trial after its cold start.
    assert makespans == [29.0, 21.0, 21.0, 21.0]
    assert grid_fifo(table, 8).progress["device_s"].iloc[-1] == 3 * 11.0 + 16.0


def test_asha_in_the_simulator_stops_trials_by_rays_rule() -> None:
    """One worker, rungs at 1024 and 2048 tokens (grace 1024, reduction factor 2), max 4096. A trial continues
    at a rung only if its metric is no worse than the 1/2-quantile of the metrics recorded there so far:
    at 1024: A (3.0) is first; B (2.0) beats the median of {3.0}; C (4.0) is worse than the median 2.5 of
    {3.0, 2.0}: stopped; D (1.0) beats 3.0. At 2048: B (1.5) beats {2.5}; D (2.8) is worse than 2.0."""
    D = 4e-3
    curves = [
        ({"lr": A}, 0, [3.0, 2.5, 2.2, 2.0], [1.0] * 4),
        ({"lr": B}, 0, [2.0, 1.5, 1.2, 1.0], [1.0] * 4),
        ({"lr": C}, 0, [4.0, 3.5, 3.2, 3.0], [1.0] * 4),
        ({"lr": D}, 0, [1.0, 2.8, 2.7, 2.6], [1.0] * 4),
    ]
    table = hand_table({"lr": {"grid": [A, B, C, D]}}, curves)
    spec = strategy_spec(table, Strategy("grid", "asha", grace_period_tokens=1024, reduction_factor=2), 0, 4)
    search = simulate(spec, CurveLookup(table), workers=1)
    go, stop = "CONTINUE", "STOP"
    assert search.decisions == [
        (0, 1024, go),
        (0, 2048, go),
        (0, 3072, go),
        (0, 4096, stop),  # max_t reached: ASHA stops it
        (1, 1024, go),
        (1, 2048, go),
        (1, 3072, go),
        (1, 4096, stop),
        (2, 1024, stop),
        (3, 1024, go),
        (3, 2048, stop),
    ]
    statuses = dict(zip(search.trials["trial_id"], search.trials["status"], strict=True))
    assert statuses == {
        "sim_00000": "completed",
        "sim_00001": "completed",
        "sim_00002": "early_stopped",
        "sim_00003": "early_stopped",
    }
    assert search.trials["trial_id"].iloc[0] == "sim_00001" and search.trials["best_metric"].iloc[0] == 1.0


def test_a_seeded_replay_is_reproducible_and_the_seed_matters() -> None:
    table = smooth_table(list(np.geomspace(1e-4, 1e-1, 12)), [32, 64])
    lookup = CurveLookup(table, "surrogate")
    strategy = Strategy("hyperopt", "asha", grace_period_tokens=1024, reduction_factor=3)

    def run(seed: int):
        return simulate(strategy_spec(table, strategy, seed, trials=16), lookup, workers=2, seed=seed)

    first, again, other = run(3), run(3), run(4)
    assert first.evaluations.equals(again.evaluations) and first.decisions == again.decisions
    assert not first.trials["config/lr"].equals(other.trials["config/lr"])
    assert len(first.trials) == 16
    # Two workers, each running one trial at a time: a worker's evaluations never interleave two trials.
    events = first.evaluations.sort_values(["clock_s"], kind="stable")
    assert set(events["worker"]) == {0, 1}
    for _, worker_events in events.groupby("worker"):
        order = list(dict.fromkeys(worker_events["trial_id"]))
        assert [t for t in order for _ in range((worker_events["trial_id"] == t).sum())] == list(
            worker_events["trial_id"]
        )


@pytest.mark.slow
def test_a_200_trial_search_replays_in_under_10_seconds() -> None:
    """The issue's speed target, on a 200-configuration table (8 evaluations per curve), hyperopt + ASHA."""
    table = smooth_table(list(np.geomspace(1e-4, 1e-1, 50)), [16, 32, 48, 64])
    strategy = Strategy("hyperopt", "asha", grace_period_tokens=1024, reduction_factor=3)
    search = simulate(strategy_spec(table, strategy, 0, trials=200), CurveLookup(table), workers=8)
    assert len(search.trials) == 200 and search.extrapolated_share == 0.0
    print(f"200-trial replay: {search.real_seconds:.2f} s, {200 / search.real_seconds:.0f} simulated trials/s")
    assert search.real_seconds < 10.0
