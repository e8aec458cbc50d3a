"""benchmarks/bench_replay_fidelity.py: how two searches' decisions are compared and each disagreement explained.

The real searches it compares take minutes (the benchmark runs them); here the comparison runs on small tables
written by hand, where the right answer is known. No Ray.
"""

from __future__ import annotations

import pandas as pd
import pytest

from benchmarks.bench_replay_fidelity import Search, compare_searches, job_spec
from tune_jobs.spec import JobSpec

RUNGS = [1.0, 2.0]


def search(outcomes: dict[str, tuple[int, str]], arrivals: dict[float, list[tuple[str, float]]]) -> Search:
    """Trials named by their lr (``outcomes``: lr -> (tokens trained, status)) and when each reached a rung; an
    evaluation takes 1 s, so a trial started 1 s before it reached rung 1."""
    trials = pd.DataFrame(
        [
            {"trial_id": lr, "config/lr": float(lr), "tokens": tokens, "status": status}
            for lr, (tokens, status) in outcomes.items()
        ]
    )
    evaluations = pd.DataFrame(
        [
            {"trial_id": lr, "tokens": rung, "at": at, "time_total_s": rung}
            for rung, seen in arrivals.items()
            for lr, at in seen
        ]
    )
    return Search(trials, evaluations, "at", RUNGS)


REAL = search(
    {"1": (4, "completed"), "2": (1, "early_stopped"), "3": (1, "early_stopped"), "4": (2, "early_stopped")},
    {1.0: [("1", 10.0), ("2", 11.0), ("3", 11.4), ("4", 13.0)], 2.0: [("1", 20.0), ("4", 21.0)]},
)


def test_the_same_search_agrees_on_every_decision() -> None:
    result = compare_searches(REAL, REAL, adaptive=True)
    # 1 continues at both rungs, 2 and 3 stop at rung 1, 4 continues at rung 1 and stops at rung 2.
    assert (result["decisions"], result["agree"], result["share"]) == (6, 6, 1.0)
    assert result["same_proposals"] == result["proposals"] == 4 and result["disagreements"] == []


def test_a_result_that_reached_the_rung_in_another_order_explains_the_flip_and_what_follows() -> None:
    # In the replay trial 3 reaches rung 1 before trial 2 and is kept; it is then stopped at rung 2.
    replay = search(
        {"1": (4, "completed"), "2": (1, "early_stopped"), "3": (2, "early_stopped"), "4": (2, "early_stopped")},
        {1.0: [("1", 9.0), ("3", 10.5), ("2", 10.8), ("4", 12.0)], 2.0: [("1", 19.0), ("3", 20.0), ("4", 22.0)]},
    )
    result = compare_searches(REAL, replay, adaptive=False)
    assert (result["decisions"], result["agree"]) == (7, 5)
    causes = {(item["config"][0], item["rung"]): item for item in result["disagreements"]}
    assert set(causes) == {(3.0, 1.0), (3.0, 2.0)}
    flip = causes[3.0, 1.0]
    # Real: 3 came 0.4 s after 2 and met a rung that had seen 1 and 2; the replay's rung had seen 1 only.
    assert (flip["real"], flip["other"], flip["cause"], flip["real_gap_s"]) == (
        "stop",
        "continue",
        "arrival order",
        0.4,
    )
    assert (causes[3.0, 2.0]["real"], causes[3.0, 2.0]["cause"]) == (None, "lower rung")


def test_a_configuration_one_search_never_proposed_is_learned_only_if_other_trials_had_ended() -> None:
    # When the real search proposed 4 (at 12.0), trials 2 and 3 had ended; when the replay proposed 5 instead (at
    # 11.0), only 2 had (3 was kept at rung 1 and went on): each searcher had learned from other results.
    flipped = search(
        {"1": (4, "completed"), "2": (1, "early_stopped"), "3": (2, "early_stopped"), "5": (1, "early_stopped")},
        {1.0: [("1", 9.0), ("3", 10.5), ("2", 10.8), ("5", 12.0)], 2.0: [("1", 19.0), ("3", 20.0)]},
    )
    adaptive = {(i["config"][0], i["rung"]): i["cause"] for i in compare_searches(REAL, flipped, True)["disagreements"]}
    assert adaptive == {
        (3.0, 1.0): "arrival order",
        (3.0, 2.0): "lower rung",
        (4.0, 1.0): "learned",
        (4.0, 2.0): "learned",
        (5.0, 1.0): "learned",
    }
    # A random or grid searcher proposes from its seed alone: a different proposal is not explained by results.
    plain = {(i["config"][0], i["rung"]): i["cause"] for i in compare_searches(REAL, flipped, False)["disagreements"]}
    assert plain[5.0, 1.0] == plain[4.0, 1.0] == "unexplained"

    # The same trials had ended when the two proposed 4 and 5 (2 and 3, both before 12.0): nothing explains it.
    same_history = search(
        {"1": (4, "completed"), "2": (1, "early_stopped"), "3": (1, "early_stopped"), "5": (1, "early_stopped")},
        {1.0: [("1", 10.0), ("2", 11.0), ("3", 11.4), ("5", 13.0)], 2.0: [("1", 20.0)]},
    )
    causes = {
        (i["config"][0], i["rung"]): i["cause"] for i in compare_searches(REAL, same_history, True)["disagreements"]
    }
    assert causes == {(4.0, 1.0): "unexplained", (4.0, 2.0): "unexplained", (5.0, 1.0): "unexplained"}, causes


@pytest.mark.parametrize(("gap_s", "cause"), [(0.011, "arrival order"), (0.4, "unexplained")])
def test_results_sent_too_close_together_to_order_explain_a_flip_and_others_do_not(gap_s: float, cause: str) -> None:
    # The same order at rung 1 in both, and yet the replay kept trial 3: in the real search 3's result came gap_s
    # after 2's, from another process; within 0.05 s the driver may have handled 3's first.
    real = search(
        {"1": (4, "completed"), "2": (1, "early_stopped"), "3": (1, "early_stopped")},
        {1.0: [("1", 10.0), ("2", 11.0), ("3", 11.0 + gap_s)], 2.0: [("1", 20.0)]},
    )
    replay = search(
        {"1": (4, "completed"), "2": (1, "early_stopped"), "3": (2, "early_stopped")},
        {1.0: [("1", 10.0), ("2", 11.0), ("3", 11.2)], 2.0: [("1", 20.0), ("3", 21.0)]},
    )
    flip = next(i for i in compare_searches(real, replay, True)["disagreements"] if i["rung"] == 1.0)
    assert (flip["config"], flip["cause"], flip.get("real_gap_s")) == (
        [3.0],
        cause,
        gap_s if cause == "arrival order" else None,
    )


@pytest.mark.parametrize("strategy", ["hyperopt+asha", "random+asha", "grid+fifo"])
def test_each_strategys_job_is_a_valid_spec_with_eight_evaluations_and_no_time_budget(strategy: str) -> None:
    spec = JobSpec.model_validate({**job_spec(strategy, 160_000), "name": "fidelity"})
    assert spec.budget.max_tokens == 8 * spec.budget.eval_every_tokens == 8 * 160_000
    assert spec.budget.time_budget_s is None and spec.max_concurrent_trials == 2
    assert spec.search.algorithm == strategy.split("+")[0] and spec.scheduler.kind == strategy.split("+")[1]
