"""The contract every search algorithm x scheduler pair the spec allows keeps, replayed on a small hand-built
table by the replay simulator (textune's own searcher and scheduler objects, no Ray): seeded proposals
reproduce; every result carries the metric and the time attribute; a diverged trial is learned as the worst
result; the search state saved and restored proposes as the original. A new pair joins with one line in PAIRS.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
from ray.tune.experiment import Experiment
from ray.tune.search import SearchAlgorithm, Searcher, SearchGenerator

from support.replay import EVAL_EVERY, hand_table
from tune_jobs.replay.lookup import CurveLookup
from tune_jobs.replay.simulator import SimulatedSearch, evaluation_tokens, simulate
from tune_jobs.replay.strategies import STRATEGIES, parse_strategies, strategy_spec
from tune_jobs.replay.table import CurveTable
from tune_jobs.search import NON_FINITE_PENALTY, TIME_ATTR, build_search_alg
from tune_jobs.space import to_param_space
from tune_jobs.spec import JobSpec

# (ALGORITHM+SCHEDULER, whether the algorithm learns from results): one line per pair the spec allows.
PAIRS = [
    ("hyperopt+asha", True),
    ("hyperopt+fifo", True),
    ("bohb+asha", True),
    ("random+asha", False),
    ("random+fifo", False),
    ("grid+asha", False),
    ("grid+fifo", False),
]
NAMES = [name for name, _ in PAIRS]

LRS = [1e-4 * 10 ** (k / 2) for k in range(7)]  # 1e-4 .. 1e-1
DIVERGING = LRS[-1]
EVALUATIONS = 4
TRIALS = 10


def curve(lr: float) -> list[float]:
    """Best near lr = 3e-3, falling with tokens."""
    return [1.0 + 0.5 * (math.log10(lr) + 2.5) ** 2 + 1.0 / step for step in range(1, EVALUATIONS + 1)]


def table(diverging_curve: list[float]) -> CurveTable:
    """The LRS curves; the highest learning rate's curve is ``diverging_curve``, and it is the point evaluated
    first, so every strategy meets it at once."""
    curves = [
        (
            {"lr": lr},
            0,
            diverging_curve if lr == DIVERGING else curve(lr),
            [1.0] * len(diverging_curve if lr == DIVERGING else curve(lr)),
        )
        for lr in LRS
    ]
    return hand_table(
        {"lr": {"grid": LRS}}, curves, search={"algorithm": "grid", "points_to_evaluate": [{"lr": DIVERGING}]}
    )


DIVERGED = table([math.inf])
PENALISED = table([NON_FINITE_PENALTY] * EVALUATIONS)  # what TPE must learn of the diverged trial
GOOD = table([0.5] * EVALUATIONS)


def spec_of(name: str, curves: CurveTable, seed: int) -> JobSpec:
    (strategy,) = parse_strategies([name], curves.spec, [EVAL_EVERY], [2.0])
    return strategy_spec(curves, strategy, seed, TRIALS)


def replay(name: str, curves: CurveTable, seed: int = 0) -> SimulatedSearch:
    # One worker: each proposal is made with every earlier trial's results known, in the same order.
    return simulate(spec_of(name, curves, seed), CurveLookup(curves), workers=1, seed=seed)


def proposed(search: SimulatedSearch) -> list[float]:
    """The learning rates in the order they were proposed."""
    return list(search.trials.sort_values("trial_id")["config/lr"])


def test_every_pair_the_spec_allows_is_in_the_contract() -> None:
    assert sorted(NAMES) == sorted(STRATEGIES)


@pytest.mark.parametrize("name", NAMES)
def test_seeded_proposals_reproduce(name: str) -> None:
    first, again = replay(name, DIVERGED, seed=3), replay(name, DIVERGED, seed=3)
    assert first.evaluations.equals(again.evaluations) and first.decisions == again.decisions
    assert len(first.trials) >= 2


@pytest.mark.parametrize("name", NAMES)
def test_every_result_carries_the_metric_and_the_time_attribute(name: str) -> None:
    """Ray's ASHA silently ignores a result without either; here every result reached the scheduler and was
    judged, at an evaluation point, with a metric (the diverged trial's is +inf, and it ended there)."""
    search = replay(name, DIVERGED)
    spec = spec_of(name, DIVERGED, 0)
    evaluations = search.evaluations
    assert evaluations[[TIME_ATTR, spec.metric]].notna().all().all()
    assert set(evaluations[TIME_ATTR]) <= set(evaluation_tokens(spec))
    assert len(search.decisions) == len(evaluations)
    diverged = search.trials[search.trials["config/lr"] == DIVERGING]
    assert set(diverged["status"]) == {"diverged"} and (diverged["evaluations"] == 1).all()
    assert len(search.trials) > len(diverged)  # the search went on after it


@pytest.mark.parametrize("name, learns", PAIRS)
def test_a_diverged_trial_is_learned_as_the_worst_result(name: str, learns: bool) -> None:
    """After a trial that diverges, the proposals are those made after a trial that reported hyperopt's
    penalty at every evaluation; a searcher that learns proposes otherwise after a trial that did well."""
    after_diverged = proposed(replay(name, DIVERGED))
    assert after_diverged == proposed(replay(name, PENALISED))
    assert (after_diverged != proposed(replay(name, GOOD))) == learns


def _never_run(config: dict[str, Any]) -> None:
    raise RuntimeError("the contract never runs its trainable")


def _search(spec: JobSpec) -> SearchAlgorithm:
    """The spec's search algorithm as Ray Tune holds it (a Searcher behind a SearchGenerator), with its space."""
    search = build_search_alg(spec, list(spec.search.points_to_evaluate), max_concurrent=1)
    search = SearchGenerator(search) if isinstance(search, Searcher) else search
    search.set_search_properties(None, None, to_param_space(spec.space))
    return search


def _run(search: SearchAlgorithm, count: int) -> list[float]:
    """Take ``count`` trials one at a time, each completed with its learning rate's final metric."""
    made = []
    for _ in range(count):
        trial = search.next_trial()
        if trial is None:
            break
        lr = trial.config["lr"]
        search.on_trial_complete(trial.trial_id, {TIME_ATTR: EVALUATIONS * EVAL_EVERY, "val_bpc": curve(lr)[-1]})
        made.append(lr)
    return made


@pytest.mark.parametrize("name", NAMES)
def test_state_saved_and_restored_proposes_as_the_original(name: str, tmp_path: Path) -> None:
    """Saved after four trials through Ray Tune's own save_to_dir and restored into a new search object the
    way ``textune resume`` restores it (space first, then the state, no configurations added again)."""
    spec = spec_of(name, GOOD, seed=1)
    original = _search(spec)
    original.add_configurations(
        [
            Experiment(
                "contract",
                _never_run,
                config=to_param_space(spec.space),
                num_samples=spec.num_samples,
                storage_path=str(tmp_path / "runs"),
            )
        ]
    )
    _run(original, 4)
    original.save_to_dir(str(tmp_path), session_str="contract")
    restored = _search(spec)
    assert restored.has_checkpoint(str(tmp_path))
    restored.restore_from_dir(str(tmp_path))
    after = _run(original, 5)
    assert after and after == _run(restored, 5)
