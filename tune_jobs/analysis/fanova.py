"""Functional ANOVA over a random forest: how much of the surrogate's variance each feature explains.

The algorithm of Hutter, Hoos and Leyton-Brown (2014), "An Efficient Approach for Assessing Hyperparameter
Importance", as Optuna's ``FanovaImportanceEvaluator`` computes it over scikit-learn trees. A regression tree
cuts the box-shaped feature space into leaves, boxes with a constant prediction, so its marginals are exact:

- the marginal f_S(x_S) of the features S averages the leaves whose box contains x_S, each weighted by the
  share of the other dimensions its box covers (the uniform measure over the space);
- f_S is constant between the tree's split points on S, so its variance is a weighted sum over the cells
  those split points cut the space into;
- a feature's main-effect share is Var(f_i) / Var(f), a pair's interaction share is
  (Var(f_ij) - Var(f_i) - Var(f_j)) / Var(f).

Shares are computed per tree and averaged over the trees that are not constant. Main-effect shares sum to at
most 1; the rest of the variance lies in interactions. Encoding hyperparameters as bounded features is the
caller's job (``bounds``: one [low, high] row per feature).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class TreePartition:
    """A fitted regression tree as its leaves: boxes and their constant predictions."""

    lower: np.ndarray  # (L, d) each leaf's open lower edge per feature (-inf at the edge of the space)
    upper: np.ndarray  # (L, d) closed upper edge (+inf at the edge), as sklearn sends x <= threshold left
    value: np.ndarray  # (L,) the leaf's prediction
    coverage: np.ndarray  # (L, d) share of each feature's range that the leaf's box covers
    cell_edges: tuple[np.ndarray, ...]  # per feature: range ends and the tree's split points, sorted

    @classmethod
    def from_tree(cls, tree: Any, bounds: np.ndarray) -> TreePartition:
        """From a fitted ``sklearn.tree._tree.Tree`` over features bounded by ``bounds`` (d, 2)."""
        n_nodes, n_features = tree.node_count, len(bounds)
        lower = np.full((n_nodes, n_features), -np.inf)
        upper = np.full((n_nodes, n_features), np.inf)
        stack = [0]
        while stack:
            node = stack.pop()
            feature = tree.feature[node]
            if feature < 0:  # a leaf
                continue
            left, right, threshold = tree.children_left[node], tree.children_right[node], tree.threshold[node]
            lower[[left, right]] = lower[node]
            upper[[left, right]] = upper[node]
            upper[left, feature] = threshold
            lower[right, feature] = threshold
            stack += [left, right]
        leaves = tree.feature < 0
        low, high = bounds[:, 0], bounds[:, 1]
        covered = np.minimum(upper[leaves], high) - np.maximum(lower[leaves], low)  # (L, d)
        edges = []
        for feature in range(n_features):
            splits = tree.threshold[tree.feature == feature]
            inside = np.unique(splits[(splits > low[feature]) & (splits < high[feature])])
            edges.append(np.concatenate(([low[feature]], inside, [high[feature]])))
        return cls(
            lower[leaves],
            upper[leaves],
            tree.value[leaves, 0, 0],
            np.clip(covered, 0.0, None) / (high - low),
            tuple(edges),
        )

    @property
    def volume(self) -> np.ndarray:
        """(L,) each leaf's share of the whole space; the shares sum to 1."""
        return self.coverage.prod(axis=1)

    @property
    def variance(self) -> float:
        mean = self.volume @ self.value
        return float(self.volume @ (self.value - mean) ** 2)

    def marginal_on_grid(self, features: Sequence[int], axes: Sequence[np.ndarray]) -> np.ndarray:
        """f_S for one feature or a pair, on the grid crossing ``axes`` (the points of each feature of S): the
        tree's prediction averaged over every other feature. Shape (P_0,) or (P_0, P_1)."""
        if len(features) not in (1, 2):
            raise ValueError(f"marginals of one feature or a pair only, not {len(features)}")
        others = np.delete(self.coverage, list(features), axis=1).prod(axis=1)  # (L,)
        inside = [
            ((self.lower[:, f] < x[:, None]) & (x[:, None] <= self.upper[:, f])).astype(np.float64)
            for f, x in zip(features, axes, strict=True)
        ]  # each (P_k, L)
        weighted = inside[0] * (self.value * others)  # (P_0, L)
        # Summing over the leaves for every pair of points is a matrix product.
        return weighted.sum(axis=1) if len(features) == 1 else weighted @ inside[1].T

    def marginal_variance(self, features: Sequence[int]) -> float:
        """Var(f_S) under the uniform measure, from f_S at the centre of every cell of S's split points."""
        centres, shares = [], []
        for feature in features:
            edges = self.cell_edges[feature]
            centres.append(0.5 * (edges[1:] + edges[:-1]))
            shares.append(np.diff(edges) / (edges[-1] - edges[0]))
        values = self.marginal_on_grid(features, centres)
        weights = np.prod(np.meshgrid(*shares, indexing="ij"), axis=0)  # same shape as values, sums to 1
        mean = np.sum(weights * values)
        return float(np.sum(weights * (values - mean) ** 2))


class ForestAnova:
    """The variance decomposition of a fitted forest (an sklearn ensemble with ``estimators_``).

    ``bounds`` (d, 2) is the box the analysis averages over: the searched range of every encoded feature.
    """

    def __init__(self, forest: Any, bounds: np.ndarray) -> None:
        self.bounds = np.asarray(bounds, dtype=np.float64)
        self.partitions = [TreePartition.from_tree(tree.tree_, self.bounds) for tree in forest.estimators_]
        # A constant tree (a bootstrap sample of equal values) has no variance to share out.
        self.varying = [(p, p.variance) for p in self.partitions if p.variance > 0]
        self._main: np.ndarray | None = None  # (T, d) per-tree main-effect variances, computed once

    def _main_variances(self) -> np.ndarray:
        if self._main is None:
            self._main = np.array(
                [[p.marginal_variance((f,)) for f in range(len(self.bounds))] for p, _ in self.varying]
            ).reshape(len(self.varying), len(self.bounds))
        return self._main

    def main_effect_shares(self) -> np.ndarray:
        """(d,) each feature's share of the variance on its own, averaged over the trees."""
        if not self.varying:
            return np.zeros(len(self.bounds))
        totals = np.array([variance for _, variance in self.varying])  # (T,)
        return (self._main_variances() / totals[:, None]).mean(axis=0)

    def main_effect_share(self, feature: int) -> float:
        """One feature's entry of :meth:`main_effect_shares`, without computing the others'."""
        if not self.varying:
            return 0.0
        return float(np.mean([p.marginal_variance((feature,)) / variance for p, variance in self.varying]))

    def interaction_share(self, first: int, second: int) -> float:
        """The share of the variance that the pair explains beyond its two main effects."""
        if not self.varying:
            return 0.0
        main = self._main_variances()
        shares = [
            max(0.0, p.marginal_variance((first, second)) - main[t, first] - main[t, second]) / variance
            for t, (p, variance) in enumerate(self.varying)
        ]
        return float(np.mean(shares))

    def main_effect_curve(self, feature: int, points: np.ndarray) -> np.ndarray:
        """The forest's marginal prediction at ``points`` (P,) of one feature: mean over all trees."""
        return np.mean([p.marginal_on_grid((feature,), (points,)) for p in self.partitions], axis=0)
