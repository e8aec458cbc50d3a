"""Hyperparameter importance of a finished search: functional ANOVA over a random-forest surrogate.

The surrogate is fitted to one row per finished trial (see :func:`surrogate_rows` for the budget rule), with
the searched hyperparameters as features (:mod:`tune_jobs.analysis.encoding`). :mod:`tune_jobs.analysis.fanova`
then splits the surrogate's variance over the search space into each hyperparameter's main effect and the
pairwise interactions of the top three. The result is the ``analysis/importance.json`` document. A search with
too few trials for its hyperparameters, or whose surrogate predicts unseen trials no better than their mean,
gets no ranking at all: the document says why and how many trials it would take (:func:`no_ranking_reason`).
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations
from typing import Any, Literal

import numpy as np
import pandas as pd
import pydantic

from models.status import TRAINER_FAILURES, TrialStatus
from textune.config import StrictModel
from textune.errors import TextuneError
from tune_jobs.analysis.encoding import ParamAxis, param_axes
from tune_jobs.analysis.fanova import ForestAnova
from tune_jobs.results.table import CONFIG_PREFIX
from tune_jobs.spec import JobSpec

# Trials whose result says something about their config. Errored trials crashed (a fault, not the config) and
# unfinished ones have not had their say.
FINISHED = (TrialStatus.COMPLETED, TrialStatus.EARLY_STOPPED, *TRAINER_FAILURES)
TOP_INTERACTIONS = 3
# A forest of this size fits 500 trials in well under a second; more trees barely move the shares.
N_TREES = 64
# The chance level of a hyperparameter: its share in forests fitted with its values shuffled across the trials.
# 8 shuffles of 8 trees per hyperparameter: as many trees as the real forest has, and enough shuffles that a
# share above all of them is unlikely by chance (at most 1 in 9).
NULL_SHUFFLES = 8
NULL_TREES = 8
# A ranking needs at least this many finished trials per searched hyperparameter: the n = 10 d rule of thumb for
# the size of the sample a surrogate of d inputs is fitted to (Loeppky, Sacks and Welch, 2009, "Choosing the
# sample size of a computer experiment"). This project's benchmark agrees (docs/analysis.md): with 5
# hyperparameters, 16 trials gave a knob that cannot matter up to 17%, 48 could not tell the smallest real
# effect from it, 96 could.
TRIALS_PER_HYPERPARAMETER = 10


class ParamShare(StrictModel):
    param: str
    share: float  # of the surrogate's variance, explained by this hyperparameter alone
    # What the same analysis gives this hyperparameter, on average, when its values are shuffled across the
    # trials (the rest kept): what a hyperparameter of its shape that cannot matter would get from this search.
    chance_share: float
    # max(0, share - chance_share): the share corrected for what the hyperparameter's values soak up by chance
    # (docs/analysis.md); conservative for a hyperparameter that matters.
    share_above_chance: float
    # The share exceeds the hyperparameter's share in every shuffle: a one-sided permutation test, p <= 1/9.
    beyond_chance: bool


class MainEffect(StrictModel):
    """The surrogate's prediction averaged over every other hyperparameter, along one hyperparameter."""

    kind: Literal["numeric", "categorical"]
    log: bool  # numeric only: sampled log-uniformly, so x belongs on a log axis
    x: list[Any]
    y: list[float]


class Interaction(StrictModel):
    params: list[str] = pydantic.Field(min_length=2, max_length=2)
    share: float  # of the variance, explained by the pair beyond its two main effects


class ImportanceReport(StrictModel):
    """The ``analysis/importance.json`` document: what ``textune analyze`` found.

    When ``no_ranking_reason`` is set the search cannot back a ranking, and ``importance``, ``main_effects``
    and ``interactions`` are empty.
    """

    metric: str
    mode: Literal["min", "max"]
    n_trials: int
    n_hyperparameters: int
    trials_needed: int  # TRIALS_PER_HYPERPARAMETER per hyperparameter
    budget_rule: str
    oob_r2: float  # how well the surrogate predicts trials it did not see (1 = perfectly, <= 0 = not at all)
    no_ranking_reason: str | None  # why importance cannot be read from this search; None when it can
    importance: list[ParamShare]  # best first; the shares sum to at most 1, interactions hold the rest
    main_effects: dict[str, MainEffect]  # every hyperparameter, in the order of importance
    interactions: list[Interaction]  # every pair of the top three, largest first


@dataclass
class SurrogateRows:
    """What the forest is fitted to: a row of trials per observation, its value and its weight."""

    trials: pd.DataFrame
    values: np.ndarray  # (N,)
    weights: np.ndarray  # (N,)
    rule: str


def surrogate_rows(trials: pd.DataFrame, spec: JobSpec) -> SurrogateRows:
    """Every finished trial at its last reported budget, weighted by how much of the budget it trained.

    ASHA stops most trials at a low rung, where the metric is a noisy, pessimistic estimate of what the config
    would reach; dropping them would leave a handful of points, keeping them at full weight would let
    half-trained results dominate. So a trial's value is its best metric up to its last evaluation and its
    weight ``tokens / T`` (T: the most tokens any trial trained): a rung-1 result still places its config in
    the space, but completed trials decide where they disagree. A diverged or out-of-memory trial is a final
    verdict on its config, not an estimate: it counts as the worst finished result, at full weight.
    """
    finished = trials[trials["status"].isin(FINISHED)].reset_index(drop=True)
    sign = 1.0 if spec.mode == "min" else -1.0
    failed = finished["status"].isin(TRAINER_FAILURES).to_numpy()
    scores = finished["best_metric"].astype(float).to_numpy()
    scored = ~failed & np.isfinite(scores)
    counts = ", ".join(f"{n} {status}" for status, n in trials["status"].value_counts().sort_index().items())
    if len(finished) < 2 or not scored.any():
        raise TextuneError(
            f"hyperparameter importance needs at least 2 finished trials with a result, and this experiment has "
            f"{int(scored.sum())} finished with a finite {spec.metric} ({counts or 'no trials'}).",
            "Let the search finish (textune resume EXPERIMENT) or run more samples, then analyze again.",
        )
    worst = sign * np.max(sign * scores[scored])
    values = np.where(scored, scores, worst)
    tokens = finished["tokens"].astype(float).to_numpy()
    full = float(tokens[scored].max())
    weights = np.where(scored, tokens / full, 1.0)
    rule = (
        f"each finished trial at its last reported budget (its best {spec.metric} up to there), weighted "
        f"by its tokens / {full:,.0f} (the most any trial trained); diverged or out-of-memory trials count "
        f"as the worst result at full weight"
    )
    return SurrogateRows(finished, values, weights, rule)


def analyze_importance(trials: pd.DataFrame, spec: JobSpec, seed: int = 0) -> ImportanceReport:
    """The importance document of a trials table (a row per trial, ``config/<param>`` columns)."""
    from sklearn.ensemble import RandomForestRegressor

    rows = surrogate_rows(trials, spec)
    if np.ptp(rows.values) == 0:
        raise TextuneError(
            f"all {len(rows.values)} finished trials scored the same {spec.metric} "
            f"({rows.values[0]:.6g}), so no hyperparameter explains any difference.",
            "Widen the search space or train longer (budget.max_tokens), then analyze again.",
        )
    axes = param_axes(spec.space, rows.trials)
    features = np.column_stack([axis.encode(rows.trials[CONFIG_PREFIX + axis.name]) for axis in axes])  # (N, d)
    bounds = np.array([[axis.low, axis.high] for axis in axes])  # (d, 2)
    forest = RandomForestRegressor(n_estimators=N_TREES, oob_score=True, random_state=seed)
    forest.fit(features, rows.values, sample_weight=rows.weights)
    n_trials, oob_r2 = len(rows.values), float(forest.oob_score_)
    evidence: dict[str, Any] = {
        "metric": spec.metric,
        "mode": spec.mode,
        "n_trials": n_trials,
        "n_hyperparameters": len(axes),
        "trials_needed": TRIALS_PER_HYPERPARAMETER * len(axes),
        "budget_rule": rows.rule,
        "oob_r2": oob_r2,
        "no_ranking_reason": no_ranking_reason(n_trials, len(axes), oob_r2),
    }
    if evidence["no_ranking_reason"] is not None:  # no ranking, no curves: the chance levels are not needed
        return ImportanceReport(**evidence, importance=[], main_effects={}, interactions=[])
    anova = ForestAnova(forest, bounds)
    shares = anova.main_effect_shares()
    chance = chance_shares(features, rows.values, rows.weights, bounds, seed)  # (S, d)
    chance_mean = chance.mean(axis=0)  # (d,)
    order = np.argsort(-shares, kind="stable")
    top = [int(i) for i in order[:TOP_INTERACTIONS]]
    interactions = sorted(
        (
            Interaction(params=[axes[i].name, axes[j].name], share=anova.interaction_share(i, j))
            for i, j in combinations(top, 2)
        ),
        key=lambda pair: -pair.share,
    )
    return ImportanceReport(
        **evidence,
        importance=[
            ParamShare(
                param=axes[i].name,
                share=float(shares[i]),
                chance_share=float(chance_mean[i]),
                share_above_chance=max(0.0, float(shares[i] - chance_mean[i])),
                beyond_chance=bool(shares[i] > chance[:, i].max()),
            )
            for i in order
        ],
        main_effects={axes[i].name: _main_effect(anova, axes[i], int(i)) for i in order},
        interactions=interactions,
    )


def no_ranking_reason(n_trials: int, n_hyperparameters: int, oob_r2: float) -> str | None:
    """Why a ranking of ``n_hyperparameters`` cannot be read from ``n_trials`` finished trials whose surrogate
    has out-of-bag R² ``oob_r2``, and how many trials it would take; None when it can be read.

    The rule: at least TRIALS_PER_HYPERPARAMETER finished trials per hyperparameter, and a surrogate that
    predicts the trials it did not see better than their mean does (R² above 0). Below either, the shares
    rank noise.
    """
    needed = TRIALS_PER_HYPERPARAMETER * n_hyperparameters
    problems = []
    if n_trials < needed:
        problems.append(
            f"it has {n_trials} finished trials for {n_hyperparameters} hyperparameters, and a ranking "
            f"needs at least {needed} ({TRIALS_PER_HYPERPARAMETER} per hyperparameter)"
        )
    if oob_r2 <= 0:
        problems.append(
            f"the surrogate fitted to them predicts the trials it did not see no better than their "
            f"mean (out-of-bag R² {oob_r2:.2f}, not above 0)"
        )
    if not problems:
        return None
    if n_trials < needed:
        short = needed - n_trials
        todo = (
            f"Run a search with num_samples of at least {needed} ({short} more trial{'s' * (short > 1)} than "
            f"this one) and analyze that"
        )
    else:  # enough trials for the rule, but their results are mostly noise for the surrogate
        todo = (
            f"Run more trials (twice as many, {2 * n_trials}, is a start) or train each longer, so that "
            f"configs differ by more than the noise"
        )
    return f"Importance cannot be read from this search: {'; and '.join(problems)}. {todo}."


def stored_report(document: dict[str, Any]) -> ImportanceReport | None:
    """An ``analysis/importance.json`` document as a report; None when it does not have this version's shape (an
    older ``textune analyze`` wrote it without the evidence fields): the report then asks for a new analysis
    rather than show a ranking nobody checked."""
    try:
        return ImportanceReport.model_validate(document)
    except pydantic.ValidationError:
        return None


def best_at(effect: MainEffect, mode: str) -> Any:
    """Where a main-effect curve is best: the x (in the user's units) of its lowest y, or highest for max."""
    index = min(range(len(effect.y)), key=lambda i: effect.y[i] if mode == "min" else -effect.y[i])
    return effect.x[index]


def chance_shares(
    features: np.ndarray, values: np.ndarray, weights: np.ndarray, bounds: np.ndarray, seed: int
) -> np.ndarray:
    """(S, d) each feature's main-effect share in S forests, each fitted with that feature shuffled across trials.

    A forest fitted to a few dozen trials explains noise too, and a continuous hyperparameter, with a split
    point between every pair of trials, soaks up more of it than a two-valued choice: with 16 trials a knob
    that cannot matter gets a share of several percent. Shuffling one feature's column breaks its link to the
    metric and keeps everything else: its values (so as many split points), the other hyperparameters' effects
    and the noise they leave. Its share there is what a hyperparameter of the same shape that the trainer
    ignored would get from this very search. (Shuffling the metric instead would remove the others' effects
    too, leaving only noise to share out: that inflates every continuous hyperparameter's chance level.)
    """
    from sklearn.ensemble import RandomForestRegressor

    rng = np.random.default_rng(seed)
    chance = np.zeros((NULL_SHUFFLES, features.shape[1]))
    for feature in range(features.shape[1]):
        for shuffle in range(NULL_SHUFFLES):
            shuffled = features.copy()  # (N, d)
            shuffled[:, feature] = rng.permutation(features[:, feature])
            forest = RandomForestRegressor(n_estimators=NULL_TREES, random_state=seed + 1 + shuffle)
            forest.fit(shuffled, values, sample_weight=weights)
            chance[shuffle, feature] = ForestAnova(forest, bounds).main_effect_share(feature)
    return chance


def _main_effect(anova: ForestAnova, axis: ParamAxis, feature: int) -> MainEffect:
    shown, encoded = axis.curve_points()
    curve = anova.main_effect_curve(feature, encoded)
    return MainEffect(kind=axis.kind, log=axis.log, x=shown, y=[float(v) for v in curve])
