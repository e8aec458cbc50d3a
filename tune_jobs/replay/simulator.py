"""A search replayed on a simulated clock: W workers, textune's own searcher and scheduler, recorded curves.

The loop does what Ray Tune's ``TuneController`` does with a searcher and a scheduler, without Ray: it builds
the objects :func:`tune_jobs.search.build_search_alg` and :func:`tune_jobs.search.build_scheduler` return for a
spec (a plain ``Searcher`` goes behind ``SearchGenerator``, as the Tuner puts it), gives the searcher the
spec's ``param_space`` and an ``Experiment`` (``add_configurations``), and then, whenever a worker is free,
takes trials from ``next_trial`` and lets ``choose_trial_to_run`` pick the one to start. Each result goes
to ``scheduler.on_trial_result``; a trial the scheduler stops, or that reaches its budget, goes to both
objects' ``on_trial_complete`` with its last result, as ``TuneController.stop_trial`` does; a result that
does not stop its trial goes to ``searcher.on_trial_result``. Trials are real ``ray.tune.experiment.Trial``
objects; building them needs no ``ray.init``.

Time: an evaluation interval takes the recorded wall seconds (or its FLOPs divided by a stated throughput).
A trial's start costs :class:`Overhead`, taken from benchmarks/bench_slots.py (docs/performance.md): a slot's
first trial waits for its worker process and Ray Tune's import, every trial for Ray Tune's switch between
trials of a reused actor. Events at the same simulated time are handled in the order they were scheduled.
"""

from __future__ import annotations

import heapq
import math
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from models.status import TrialStatus
from tune_jobs.cost import trial_cost
from tune_jobs.replay.lookup import CurveLookup, Evaluation
from tune_jobs.results.table import CONFIG_PREFIX
from tune_jobs.search import TIME_ATTR, build_scheduler, build_search_alg
from tune_jobs.space import to_param_space
from tune_jobs.spec import JobSpec


@dataclass(frozen=True)
class Overhead:
    """Seconds a slot spends outside recorded evaluations (benchmarks/bench_slots.py, docs/performance.md).

    ``slot_start_s``: once per worker, before its first trial (worker process start and ``import ray.tune``,
    12.9-13.1 s per slot measured on 2 cores). ``trial_start_s``: before every trial (Ray Tune between two trials
    of a reused actor, median 0.08 s). A slot's first-trial imports of torch happen inside the trial and are
    already part of the recorded wall seconds of its first evaluation.
    """

    slot_start_s: float = 13.0
    trial_start_s: float = 0.08


@dataclass
class _Running:
    trial: Any
    index: int
    worker: int
    config: dict[str, Any]
    evaluation: int = 0
    trial_wall_s: float = 0.0
    flops: float = 0.0
    best: float = math.inf
    last: dict[str, Any] = field(default_factory=dict)


@dataclass
class SimulatedSearch:
    """The outcome of one replay.

    ``trials`` and ``evaluations`` have the layout of results.parquet and evaluations.parquet (evaluations add
    ``clock_s``, the simulated time of the result, ``worker`` and ``extrapolated``). ``progress`` has a row per
    result in simulated order: ``clock_s``, ``tokens`` and ``device_s`` (cumulative over the whole search,
    trial-start overheads included in ``device_s``) and ``best`` (the best metric so far). ``decisions`` lists
    (trial index, tokens, "CONTINUE" or "STOP") in the order the scheduler made them.
    """

    trials: pd.DataFrame
    evaluations: pd.DataFrame
    progress: pd.DataFrame
    decisions: list[tuple[int, int, str]]
    makespan_s: float
    extrapolated_share: float
    real_seconds: float


class _Controller:
    """What schedulers may ask of Ray Tune's controller here: the trials, in the order they were added."""

    def __init__(self) -> None:
        self.trials: list[Any] = []

    def get_trials(self) -> list[Any]:
        return self.trials


def _never_run(config: dict[str, Any]) -> None:
    """The trainable named in the simulated Experiment; the simulator never calls it."""
    raise RuntimeError("a simulated search never runs its trainable")


def evaluation_tokens(spec: JobSpec) -> list[int]:
    """The token counts at which a trial of ``spec`` reports: every eval_every_tokens, and at max_tokens."""
    every, budget = spec.budget.eval_every_tokens, spec.budget.max_tokens
    points = list(range(every, budget + 1, every))
    return points if points and points[-1] == budget else [*points, budget]


def simulate(
    spec: JobSpec,
    lookup: CurveLookup,
    workers: int,
    seed: int = 0,
    overhead: Overhead = Overhead(),
    throughput_flops_per_s: float | None = None,
    max_trials: int | None = None,
) -> SimulatedSearch:
    """Replay the search ``spec`` describes (its algorithm, scheduler, space, num_samples and seed) on ``workers``
    simulated workers; ``seed`` also picks among a configuration's recorded seeds. ``max_trials`` stops taking
    new trials from the searcher after that many (a grid larger than the replay's budget is cut there)."""
    from ray.tune.experiment import Experiment, Trial
    from ray.tune.schedulers import TrialScheduler
    from ray.tune.search import Searcher, SearchGenerator

    started_at = time.perf_counter()
    search_alg = build_search_alg(spec, list(spec.search.points_to_evaluate), workers)
    if isinstance(search_alg, Searcher):
        search_alg = SearchGenerator(search_alg)
    scheduler = build_scheduler(spec)
    param_space = to_param_space(spec.space)
    search_alg.set_search_properties(None, None, param_space)
    points = evaluation_tokens(spec)
    devices = spec.resources.gpu if spec.resources.gpu > 0 else spec.resources.cpu
    # Typed Any: it stands in for Ray Tune's TuneController, of which schedulers call get_trials() only.
    controller: Any = _Controller()
    queue: list[tuple[float, int, _Running, Evaluation, float]] = []  # (finish time, tie-break, trial, step, s)
    free, warm = list(range(workers)), set()
    index: dict[str, int] = {}  # Ray's trial id -> the order the searcher proposed it
    rows: list[dict[str, Any]] = []
    finished: list[tuple[_Running, TrialStatus]] = []
    progress: list[tuple[float, int, float, float]] = []
    decisions: list[tuple[int, int, str]] = []
    clock = device_s = 0.0
    tokens_total = 0
    best = math.inf
    sign = 1.0 if spec.mode == "min" else -1.0
    sequence = 0

    def schedule(state: _Running, at: float) -> None:
        nonlocal sequence
        step = lookup.evaluation(state.config, points[state.evaluation], seed)
        seconds = step.flops / throughput_flops_per_s if throughput_flops_per_s else step.wall_s
        heapq.heappush(queue, (at + seconds, sequence, state, step, seconds))
        sequence += 1

    with tempfile.TemporaryDirectory(prefix="textune-replay-") as storage:
        search_alg.add_configurations(
            [Experiment("replay", _never_run, config=param_space, num_samples=spec.num_samples, storage_path=storage)]
        )
        while True:
            while free:
                trial = scheduler.choose_trial_to_run(controller)
                if trial is None:
                    if max_trials is not None and len(controller.trials) >= max_trials:
                        break
                    trial = search_alg.next_trial()
                    if trial is None:
                        break
                    index[trial.trial_id] = len(controller.trials)
                    controller.trials.append(trial)
                    scheduler.on_trial_add(controller, trial)
                    continue
                worker = heapq.heappop(free)
                start_cost = overhead.trial_start_s + (0.0 if worker in warm else overhead.slot_start_s)
                warm.add(worker)
                device_s += start_cost * devices
                trial.set_status(Trial.RUNNING)
                config = {name: trial.config[name] for name in spec.space}
                schedule(_Running(trial, index[trial.trial_id], worker, config), clock + start_cost)
            if not queue:
                break
            clock, _, state, step, seconds = heapq.heappop(queue)
            tokens = points[state.evaluation]
            state.trial_wall_s += seconds
            state.flops += step.flops
            tokens_total += tokens - (points[state.evaluation - 1] if state.evaluation else 0)
            device_s += seconds * devices
            status = TrialStatus.DIVERGED if not math.isfinite(step.metric) else TrialStatus.RUNNING
            if math.isfinite(step.metric):
                state.best = min(state.best, sign * step.metric)
                best = min(best, sign * step.metric)
            result = {
                TIME_ATTR: tokens,
                spec.metric: step.metric,
                "train_loss": step.train_loss,
                "flops": state.flops,
                "time_total_s": state.trial_wall_s,
                "status": status,
                "training_iteration": state.evaluation + 1,
                "trial_id": state.trial.trial_id,
            }
            decision = scheduler.on_trial_result(controller, state.trial, result)
            decisions.append((state.index, tokens, decision))
            done = decision == TrialScheduler.STOP or tokens >= points[-1] or status == TrialStatus.DIVERGED
            if done:
                result["status"] = (
                    status
                    if status == TrialStatus.DIVERGED
                    else (TrialStatus.COMPLETED if tokens >= points[-1] else TrialStatus.RUNNING)
                )
            else:
                search_alg.on_trial_result(state.trial.trial_id, result)
            state.last = result
            rows.append(
                {
                    "trial_id": _trial_name(state.index),
                    **_evaluation_columns(result),
                    "clock_s": clock,
                    "worker": state.worker,
                    "extrapolated": step.extrapolated,
                }
            )
            progress.append((clock, tokens_total, device_s, sign * best))
            if done:
                scheduler.on_trial_complete(controller, state.trial, result)
                search_alg.on_trial_complete(state.trial.trial_id, result=result)
                state.trial.set_status(Trial.TERMINATED)
                heapq.heappush(free, state.worker)
                finished.append((state, _final_status(result, points[-1])))
            else:
                state.evaluation += 1
                schedule(state, clock)
    evaluations = pd.DataFrame(rows)
    trials = _trial_table(finished, spec, sign)
    extrapolated = float(evaluations["extrapolated"].mean()) if not evaluations.empty else 0.0
    progress_frame = pd.DataFrame(progress, columns=["clock_s", "tokens", "device_s", "best"])
    return SimulatedSearch(
        trials, evaluations, progress_frame, decisions, clock, extrapolated, time.perf_counter() - started_at
    )


def _trial_name(index: int) -> str:
    # Ray's trial ids carry a random prefix; a replay names trials by their order, so two replays compare.
    return f"sim_{index:05d}"


def _evaluation_columns(result: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in result.items() if key not in ("trial_id", "training_iteration")}


def _final_status(result: dict[str, Any], max_tokens: int) -> TrialStatus:
    if result["status"] == TrialStatus.DIVERGED:
        return TrialStatus.DIVERGED
    return TrialStatus.COMPLETED if result[TIME_ATTR] >= max_tokens else TrialStatus.EARLY_STOPPED


def _trial_table(finished: list[tuple[_Running, TrialStatus]], spec: JobSpec, sign: float) -> pd.DataFrame:
    """A row per trial in results.parquet's layout, best first."""
    rows = []
    for state, status in sorted(finished, key=lambda item: item[0].index):
        best_metric = sign * state.best if math.isfinite(state.best) else math.inf * sign
        last = state.last
        rows.append(
            {
                "trial_id": _trial_name(state.index),
                "status": status.value,
                **{CONFIG_PREFIX + name: value for name, value in state.config.items()},
                **trial_cost(last, spec.resources),
                "best_metric": best_metric,
                "best_val_bpc": best_metric if spec.metric == "val_bpc" else math.nan,
                "best_val_ppl": best_metric if spec.metric == "val_ppl" else math.nan,
                "last_val_bpc": float(last.get("val_bpc", math.nan)),
                "last_val_ppl": float(last.get("val_ppl", math.nan)),
                "floor_bpc": math.nan,
                "evaluations": state.evaluation + 1,
                # A replay trains nothing, so it keeps no checkpoint and has no trial directory.
                "checkpoint": None,
                "checkpoint_sha256": None,
                "trial_dir": None,
                "node_id": None,
                "gpu_ids": None,
                "failures": 0,
                "error": None,
            }
        )
    trials = pd.DataFrame(rows)
    if not trials.empty:
        trials = trials.sort_values("best_metric", ascending=spec.mode == "min", kind="stable").reset_index(drop=True)
    return trials
