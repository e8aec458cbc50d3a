"""Rung-aware TPE (``search.algorithm: bohb``) driven through its Ray Tune callbacks, as Ray Tune and the replay
simulator drive it: which rung's model proposes, seeded proposals, state round trip, diverged trials. The
contract every search algorithm shares is in test_search_contract.py. Only the resume test starts Ray."""

from __future__ import annotations

import math
import signal
from pathlib import Path
from statistics import median
from typing import Any

import pandas as pd
import pytest
from ray.tune.search import ConcurrencyLimiter

from conftest import run_textune, run_until
from support.jobs import tiny_job, write_job
from support.replay import hand_spec
from tune_jobs.bohb import RANDOM_FRACTION, RungTPESearch
from tune_jobs.search import NON_FINITE_PENALTY, TIME_ATTR, build_search_alg, rung_milestones
from tune_jobs.space import Dimension, to_param_space
from tune_jobs.spec import JobSpec

LEVELS = [1024.0, 3072.0, 9216.0]
SPACE = {"lr": Dimension(loguniform=[1e-4, 1e-1])}
EARLY_BEST, FINAL_BEST = 3e-2, 1e-3  # where the rung-1 and the final rankings peak


def searcher(
    points: list[dict[str, Any]] = (),
    seed: int = 0,
    mode: str = "min",
    random_fraction: float = 0.0,
    space: dict[str, Dimension] = SPACE,
) -> RungTPESearch:
    """A searcher as Ray Tune sets it up; by default without random proposals, so every proposal is modelled
    once a level has d + 1 observations."""
    search = RungTPESearch(
        LEVELS,
        metric="val_bpc",
        mode=mode,
        time_attr=TIME_ATTR,
        points_to_evaluate=list(points),
        random_fraction=random_fraction,
        random_state_seed=seed,
    )
    search.set_search_properties(None, None, to_param_space(space))
    return search


def report(search: RungTPESearch, trial_id: str, metrics: dict[int, float], final: bool = True) -> None:
    """Results at the given tokens, in order; the last one ends the trial (stopped or completed)."""
    reports = list(metrics.items())
    for tokens, value in reports[:-1] if final else reports:
        search.on_trial_result(trial_id, {TIME_ATTR: tokens, "val_bpc": value})
    if final:
        tokens, value = reports[-1]
        search.on_trial_complete(trial_id, {TIME_ATTR: tokens, "val_bpc": value})


def early(lr: float) -> float:
    return 2.0 + (math.log10(lr) - math.log10(EARLY_BEST)) ** 2  # high learning rates look good at rung 1


def final(lr: float) -> float:
    return 1.0 + (math.log10(lr) - math.log10(FINAL_BEST)) ** 2


def distance(lr: float, to: float) -> float:
    return abs(math.log10(lr) - math.log10(to))


def proposals(search: RungTPESearch, count: int, prefix: str) -> list[tuple[float, float | None]]:
    """``count`` proposals (learning rate, level whose model proposed it); they stay running, unreported."""
    made = []
    for k in range(count):
        trial_id = f"{prefix}{k}"
        made.append((search.suggest(trial_id)["lr"], search.proposed_from[trial_id]))
    return made


def test_proposals_come_from_the_highest_rung_with_d_plus_1_observations() -> None:
    """A table where the rung-1 ranking (best near 3e-2) and the final ranking (best near 1e-3) differ: ten
    trials stopped at rung 1, six that run on. While only rung 1 has observations, its model proposes near 3e-2;
    once the full budget holds d + 1 = 2 of them, the top model proposes, near 1e-3."""
    stopped = [1e-4 * 10 ** (k / 3) for k in range(10)]  # 1e-4 .. 1e-1
    finishers = [1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2]
    points = [{"lr": lr} for lr in stopped + finishers]
    search = searcher(points)
    assert search.min_points == 2
    for k, lr in enumerate(stopped + finishers):
        assert search.suggest(f"p{k}") == {"lr": lr} and search.proposed_from[f"p{k}"] is None
    for k, lr in enumerate(stopped):
        report(search, f"p{k}", {1024: early(lr)})  # ASHA stopped it at the first rung
    for k, lr in enumerate(finishers, start=len(stopped)):
        report(search, f"p{k}", {1024: early(lr)}, final=False)

    from_rung_1 = proposals(search, 20, "a")
    assert {level for _, level in from_rung_1} == {1024.0}
    assert median(distance(lr, EARLY_BEST) for lr, _ in from_rung_1) < median(
        distance(lr, FINAL_BEST) for lr, _ in from_rung_1
    )

    # The finishers reach the middle rung and the full budget: six observations at each, above d + 1.
    for k, lr in enumerate(finishers, start=len(stopped)):
        search.on_trial_result(f"p{k}", {TIME_ATTR: 3072, "val_bpc": (early(lr) + final(lr)) / 2})
        search.on_trial_complete(f"p{k}", {TIME_ATTR: 9216, "val_bpc": final(lr)})
    from_top = proposals(search, 20, "b")
    assert {level for _, level in from_top} == {9216.0}
    assert (
        median(distance(lr, FINAL_BEST) for lr, _ in from_top)
        < 0.5
        < median(distance(lr, EARLY_BEST) for lr, _ in from_top)
    )


def test_a_level_with_fewer_than_d_plus_1_observations_is_not_modelled() -> None:
    """Two dimensions need three observations: with two at the full budget, rung 1 (three) still proposes."""
    space = {**SPACE, "width": Dimension(choice=[32, 64])}
    points = [{"lr": lr, "width": 64} for lr in (1e-4, 1e-3, 1e-2)]
    search = searcher(points, space=space)
    assert search.min_points == 3
    for k in range(3):
        search.suggest(f"p{k}")
    report(search, "p0", {1024: 3.0})
    report(search, "p1", {1024: 2.0, 9216: 1.0})
    report(search, "p2", {1024: 2.5, 9216: 1.5})
    assert [level for _, level in proposals(search, 5, "a")] == [1024.0] * 5
    assert search.suggest("x")["width"] in (32, 64)  # a choice comes back as its value, not its index


def test_a_third_of_proposals_stay_random() -> None:
    search = searcher([{"lr": lr} for lr in (1e-4, 1e-3, 1e-2)], random_fraction=RANDOM_FRACTION)
    for k in range(3):
        search.suggest(f"p{k}")
        report(search, f"p{k}", {1024: 3.0 - k, 9216: 2.0 - k})
    levels = [level for _, level in proposals(search, 90, "a")]
    assert set(levels) == {None, 9216.0}
    assert 0.2 < levels.count(None) / len(levels) < 0.47  # 1/3, within the binomial spread of 90 draws


def test_seeded_proposals_reproduce_and_the_seed_matters() -> None:
    def run(seed: int) -> list[tuple[float, float | None]]:
        search = searcher(seed=seed, random_fraction=RANDOM_FRACTION)
        made = []
        for k in range(12):
            made += proposals(search, 1, f"t{k}-")
            report(search, f"t{k}-0", {1024: early(made[-1][0]), 9216: final(made[-1][0])})
        return made

    first = run(3)
    assert first == run(3)
    assert first != run(4)
    assert any(level == 9216.0 for _, level in first)  # the model proposed, not only the prior


def test_state_round_trip_gives_the_same_next_proposals(tmp_path: Path) -> None:
    """Saved with two trials still running; the restored searcher records their later results as the original
    does, and both then propose the same configurations. The restored one is built as ``textune resume`` builds
    it: Ray Tune's ``Tuner.restore`` gives it no search space (no ``set_search_properties``), so the state brings
    the space too."""
    search = searcher(seed=7, random_fraction=RANDOM_FRACTION)
    for k in range(6):
        lr = search.suggest(f"t{k}")["lr"]
        report(search, f"t{k}", {1024: early(lr), 9216: final(lr)}, final=k < 4)
    search.save(str(tmp_path / "searcher-state.pkl"))
    # Another seed: the state brings the generator back.
    restored = RungTPESearch(LEVELS, metric="val_bpc", mode="min", time_attr=TIME_ATTR, random_state_seed=0)
    restored.restore(str(tmp_path / "searcher-state.pkl"))
    for copy in (search, restored):
        copy.on_trial_complete("t4", {TIME_ATTR: 9216, "val_bpc": 1.5})
        copy.on_trial_complete("t5", {TIME_ATTR: 3072, "val_bpc": 2.5})
    assert proposals(search, 8, "n") == proposals(restored, 8, "n")
    assert search.get_state()["observations"] == restored.get_state()["observations"]


@pytest.mark.parametrize("mode, diverged", [("min", math.inf), ("min", math.nan), ("max", -math.inf)])
def test_a_diverged_trial_is_learned_as_bad_at_every_level(mode: str, diverged: float) -> None:
    """A trial that diverges before the first rung is observed with hyperopt's penalty (TPE minimises, so +1e6
    in either mode) at every level, including the full budget it never reaches; an errored trial adds nothing."""
    search = searcher([{"lr": 1e-1}, {"lr": 1e-3}, {"lr": 1e-2}], mode=mode)
    for trial_id in ("d", "e", "f"):
        search.suggest(trial_id)
    search.on_trial_result("d", {TIME_ATTR: 512, "val_bpc": diverged})
    search.on_trial_complete("d", {TIME_ATTR: 512, "val_bpc": diverged})
    search.on_trial_complete("e", None, error=True)
    report(search, "f", {1024: 2.0})
    observations = search.get_state()["observations"]
    assert [[(tid, loss) for tid, _, loss in level] for level in observations] == [
        [(0, NON_FINITE_PENALTY), (2, -2.0 if mode == "max" else 2.0)],
        [(0, NON_FINITE_PENALTY)],
        [(0, NON_FINITE_PENALTY)],
    ]


def test_a_diverged_region_is_avoided() -> None:
    """Learned as bad, the diverging high learning rates are proposed less than the prior would (1/3 of the log
    range lies above 1e-2)."""
    diverging = [{"lr": lr} for lr in (2e-2, 4e-2, 6e-2, 9e-2)]
    fine = [{"lr": lr} for lr in (1e-4, 1e-3, 3e-3)]
    search = searcher(diverging + fine)
    for k, point in enumerate(diverging + fine):
        search.suggest(f"p{k}")
        value = math.inf if point in diverging else final(point["lr"])
        report(search, f"p{k}", {1024 if point in diverging else 9216: value})
    high = [lr for lr, _ in proposals(search, 30, "a") if lr > 1e-2]
    assert len(high) <= 3, high


def test_the_spec_builds_bohb_behind_the_concurrency_limiter_with_asha_levels() -> None:
    spec = hand_spec(
        {"lr": {"loguniform": [1e-4, 1e-1]}},
        9216,
        search={"algorithm": "bohb"},
        scheduler={"kind": "asha", "grace_period_tokens": 1024, "reduction_factor": 3},
        seed=5,
    )
    built = build_search_alg(spec, [], max_concurrent=2)
    assert isinstance(built, ConcurrencyLimiter) and built.max_concurrent == 2
    inner = built.searcher
    assert isinstance(inner, RungTPESearch)
    # The top rung is the full budget here: one level, not two.
    assert rung_milestones(spec) == [1024, 3072, 9216] and inner.levels == [1024, 3072, 9216]
    assert (inner.metric, inner.mode, inner.time_attr, inner.random_state_seed) == ("val_bpc", "min", TIME_ATTR, 5)
    longer = hand_spec(
        {"lr": {"loguniform": [1e-4, 1e-1]}},
        10240,
        search={"algorithm": "bohb"},
        scheduler={"kind": "asha", "grace_period_tokens": 1024, "reduction_factor": 3},
    )
    assert build_search_alg(longer, [], 1).searcher.levels == [1024, 3072, 9216, 10240]


def test_control_knobs_are_sampled_like_any_key() -> None:
    search = searcher(space={**SPACE, "ignored_knob": Dimension(uniform=[0.0, 1.0])})
    knobs = [search.suggest(f"t{k}")["ignored_knob"] for k in range(10)]
    assert len(set(knobs)) == 10 and all(0.0 <= knob <= 1.0 for knob in knobs)


def saved_observations(job: dict[str, Any], experiment: Path) -> list[list[float]]:
    """Per level, the losses in the searcher state Ray Tune saved with the experiment."""
    search = build_search_alg(JobSpec.model_validate(job), [], max_concurrent=1)
    search.restore_from_dir(str(experiment))
    return [[loss for _, _, loss in level] for level in search.searcher.get_state()["observations"]]


@pytest.mark.timeout(300)
@pytest.mark.slow
def test_textune_resume_restores_the_searchers_rung_results(tmp_path: Path) -> None:
    """The one test in which Ray Tune itself drives the searcher (the Tuner's space, the concurrency limiter, the
    experiment's snapshots), kept small: six one-second trials, one at a time, interrupted with Ctrl-C once the
    third has reported, then ``textune resume``. The trials that ended before the interruption do not run again,
    so only the restored state can hold their results: at the end the saved state holds, at each level, exactly
    the metrics all trials reported on reaching it."""
    trials = 6
    job = tiny_job(
        tmp_path,
        name="bohb",
        num_samples=trials,
        max_concurrent_trials=1,
        search={"algorithm": "bohb"},
        scheduler={"kind": "asha", "grace_period_tokens": 1024, "reduction_factor": 3},
    )
    experiment = tmp_path / "bohb"
    reported = lambda: sum(1 for f in experiment.glob("trial_*/result.json") if f.stat().st_size) >= 3  # noqa: E731
    output = run_until(write_job(tmp_path / "job.yaml", job), reported, signal.SIGINT)
    assert "textune resume" in output, output[-3000:]
    before = saved_observations(job, experiment)
    assert 2 <= len(before[0]) < trials, before  # the ended trials' first-rung results, saved at the interruption

    result = run_textune("resume", str(experiment), timeout=240)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    after = saved_observations(job, experiment)
    assert all(
        any(math.isclose(loss, kept) for kept in level_after)
        for level, level_after in zip(before, after, strict=True)
        for loss in level
    )
    # A report that raced the interruption is trained and recorded again after the resume (docs/reliability.md);
    # the searcher observes a trial once per level.
    evaluations = pd.read_parquet(experiment / "evaluations.parquet").drop_duplicates(["trial_id", "tokens"])
    assert evaluations[evaluations["tokens"] == 1024]["trial_id"].nunique() == trials
    for level, observed in zip(LEVELS, after, strict=True):
        reported_there = sorted(evaluations[evaluations["tokens"] == level]["val_bpc"])
        assert sorted(observed) == pytest.approx(reported_there)
