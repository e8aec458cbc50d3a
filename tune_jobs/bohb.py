"""Rung-aware TPE (``search.algorithm: bohb``): asynchronous BOHB on HyperOpt's TPE, for ASHA's token rungs.

HyperOpt's TPE learns each trial's last result, so a trial ASHA stopped at the first rung enters its model beside
one trained to the full budget, as if the two metrics compared (ray-project/ray#6056). BOHB (Falkner et al. 2018)
models each budget apart: here one set of observations per *level* (ASHA's rungs, and ``max_tokens`` as the
last), a trial's observation at a level being its metric at its first report whose tokens reach that level.
A proposal is drawn at random with probability ``random_fraction`` (BOHB's 1/3), else from TPE fitted on the
observations of the highest level that holds at least d + 1 of them (d: the searched dimensions), else at random
while no level has that many.

Only Ray Tune's public ``Searcher`` interface is used (``set_search_properties``, ``suggest``,
``on_trial_result``, ``on_trial_complete``, ``save``/``restore``); TPE is HyperOpt's own ``tpe.suggest`` over a
``hyperopt.Trials`` built from one level's observations, with the search space converted as Ray's
``HyperOptSearch`` converts it, so ``hyperopt`` and ``bohb`` differ only in what the model is fitted on.
docs/tuning.md says why it is built on HyperOpt.
"""

from __future__ import annotations

import copy
import math
import pickle
from dataclasses import dataclass
from typing import Any

import hyperopt as hpo
import numpy as np
from ray.tune.search import Searcher
from ray.tune.search.hyperopt import HyperOptSearch

from tune_jobs.search import finite_metric

# BOHB's share of proposals drawn at random from the prior, whatever the models say (Falkner et al. 2018).
RANDOM_FRACTION = 1 / 3
# TPE's split between good and bad observations: HyperOptSearch's default, so bohb's TPE is hyperopt's.
GAMMA = 0.25


@dataclass
class _Proposal:
    """A live trial: its HyperOpt id, its values in HyperOpt's form (a choice as its index) and how many of
    the levels it has been observed at."""

    tid: int
    values: dict[str, Any]
    reached: int = 0


def _identity(space: dict[str, Any]) -> dict[str, Any]:
    # HyperOpt's objective; only its domain is used. A named function pickles where a lambda would not.
    return space


class RungTPESearch(Searcher):
    """Asynchronous BOHB: TPE fitted per level on the results trials report there (module docstring).

    ``levels``: the token counts at which trials are observed, ascending (ASHA's rung milestones, then the
    full budget). ``points_to_evaluate`` are proposed first, as they are given. A non-finite metric (a diverged
    or out-of-memory trial) is observed as ``tune_jobs.search.finite_metric`` makes it for ``hyperopt``, at the
    level it reported at and every level above, which it can no longer reach. A result without the metric or
    ``time_attr`` is not observed; an errored trial adds nothing (the error says nothing of its configuration).
    ``proposed_from`` maps each proposed trial id to the level (in tokens) whose model proposed it, or None for
    a random proposal or a point to evaluate.
    """

    def __init__(
        self,
        levels: list[float],
        metric: str,
        mode: str,
        time_attr: str,
        points_to_evaluate: list[dict[str, Any]] | None = None,
        random_fraction: float = RANDOM_FRACTION,
        random_state_seed: int | None = None,
    ) -> None:
        super().__init__(metric=metric, mode=mode)
        self.levels = list(levels)
        self.time_attr = time_attr
        self.points_to_evaluate = copy.deepcopy(points_to_evaluate or [])
        self.random_fraction = random_fraction
        self.random_state_seed = random_state_seed
        # Set by set_search_properties (the space; set_state on a resume) and changed by every proposal and result.
        self._param_space: dict[str, Any] = {}
        self._space: dict[str, Any] = {}
        self._domain: hpo.Domain | None = None
        self._observations: list[list[tuple[int, dict[str, Any], float]]] = [[] for _ in self.levels]
        self._live: dict[str, _Proposal] = {}
        self._points: list[dict[str, Any]] = []
        self._next_tid = 0
        self._rng = np.random.RandomState(random_state_seed)
        self.proposed_from: dict[str, float | None] = {}

    @property
    def min_points(self) -> int:
        """BOHB's rule: a level's model needs d + 1 observations for d searched dimensions."""
        return len(self._domain.params) + 1 if self._domain is not None else 1

    def set_search_properties(self, metric: str | None, mode: str | None, config: dict[str, Any], **spec: Any) -> bool:
        """Take Ray Tune's ``param_space`` (``tune_jobs.space.to_param_space``) and the search's metric and mode."""
        self._metric = metric or self._metric
        self._mode = mode or self._mode
        self._use_space(config)
        self._points = [self._hyperopt_values(point) for point in self.points_to_evaluate]
        return True

    def _use_space(self, config: dict[str, Any]) -> None:
        self._param_space = config
        self._space = HyperOptSearch.convert_search_space(config)
        self._domain = hpo.Domain(_identity, self._space)

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        if self._domain is None:
            raise RuntimeError("RungTPESearch has no search space: Ray Tune calls set_search_properties first")
        tid, self._next_tid = self._next_tid, self._next_tid + 1
        level = None
        if self._points:
            values = self._points.pop(0)
        else:
            seed = int(self._rng.randint(2**31 - 1))
            explore = self._rng.random_sample() < self.random_fraction
            level = None if explore else self._model_level()
            if level is None:
                docs = hpo.rand.suggest([tid], self._domain, hpo.Trials(), seed)
            else:
                docs = hpo.tpe.suggest(
                    [tid], self._domain, self._trials(level), seed, n_startup_jobs=self.min_points, gamma=GAMMA
                )
            values = {label: _plain(found[0]) for label, found in docs[0]["misc"]["vals"].items() if found}
        self._live[trial_id] = _Proposal(tid, values)
        self.proposed_from[trial_id] = None if level is None else self.levels[level]
        return hpo.pyll.rec_eval(self._domain.expr, memo=self._domain.memo_from_config(values))

    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        self._observe(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False) -> None:
        if result and not error:
            self._observe(trial_id, result)
        self._live.pop(trial_id, None)

    def get_state(self) -> dict[str, Any]:
        """Everything proposals and results changed, and Ray Tune's search space: a resumed Tuner
        (``Tuner.restore``) does not call ``set_search_properties`` again, so the state must bring the space."""
        return copy.deepcopy(
            {
                "observations": self._observations,
                "live": self._live,
                "points": self._points,
                "next_tid": self._next_tid,
                "rng": self._rng.get_state(),
                "proposed_from": self.proposed_from,
                "param_space": self._param_space,
            }
        )

    def set_state(self, state: dict[str, Any]) -> None:
        state = copy.deepcopy(state)
        if state["param_space"]:
            self._use_space(state["param_space"])
        self._observations, self._live, self._points = state["observations"], state["live"], state["points"]
        self._next_tid, self.proposed_from = state["next_tid"], state["proposed_from"]
        self._rng.set_state(state["rng"])

    def save(self, checkpoint_path: str) -> None:
        # A pickle, as every searcher state Ray Tune keeps (tune_jobs.ray_state checks it whole before resume).
        with open(checkpoint_path, "wb") as handle:
            pickle.dump(self.get_state(), handle)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as handle:
            self.set_state(pickle.load(handle))

    def _observe(self, trial_id: str, result: dict[str, Any]) -> None:
        proposal = self._live.get(trial_id)
        value, tokens = result.get(self.metric), result.get(self.time_attr)
        if proposal is None or not isinstance(value, (int, float)) or not isinstance(tokens, (int, float)):
            return
        loss = finite_metric(value, self.mode) * (-1.0 if self.mode == "max" else 1.0)  # TPE minimises
        diverged = not math.isfinite(value)
        # A diverged configuration is bad at every budget: the top level's model must learn it too.
        while proposal.reached < len(self.levels) and (diverged or tokens >= self.levels[proposal.reached]):
            self._observations[proposal.reached].append((proposal.tid, proposal.values, float(loss)))
            proposal.reached += 1

    def _model_level(self) -> int | None:
        """The highest level with at least ``min_points`` observations, or None."""
        enough = [k for k, observed in enumerate(self._observations) if len(observed) >= self.min_points]
        return enough[-1] if enough else None

    def _trials(self, level: int) -> hpo.Trials:
        """A level's observations as the finished trials of a ``hyperopt.Trials``: what ``tpe.suggest`` fits."""
        trials = hpo.Trials()
        docs = []
        for tid, values, loss in self._observations[level]:
            misc = {
                "tid": tid,
                "cmd": None,
                "workdir": None,
                "idxs": {label: [tid] for label in values},
                "vals": {label: [value] for label, value in values.items()},
            }
            doc = trials.new_trial_docs([tid], [None], [{"loss": loss, "status": hpo.STATUS_OK}], [misc])[0]
            docs.append({**doc, "state": hpo.JOB_STATE_DONE})
        trials.insert_trial_docs(docs)
        trials.refresh()
        return trials

    def _hyperopt_values(self, point: dict[str, Any]) -> dict[str, Any]:
        """A point to evaluate in HyperOpt's form: a choice's value as its index, as HyperOptSearch converts it."""
        values = {}
        for label, value in point.items():
            node = self._space.get(label)
            if node is not None and node.name == "switch":
                options = [argument.obj for argument in node.pos_args[1:]]
                value = next(
                    k
                    for k, option in enumerate(options)
                    if option == value and isinstance(option, bool) == isinstance(value, bool)
                )
            values[label] = value
        return values


def _plain(value: Any) -> Any:
    """A NumPy scalar from HyperOpt as the Python number it holds, so the state stays plain data."""
    return value.item() if isinstance(value, np.generic) else value
