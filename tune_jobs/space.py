"""The search-space grammar of a job spec and its compilation to a Ray Tune ``param_space``.

A job spec's ``space:`` maps a hyperparameter name to one single-key mapping::

    lr:         {loguniform: [1.0e-4, 1.0e-2]}   # float, log-uniform in [low, high]
    dropout:    {uniform: [0.0, 0.2]}            # float, uniform in [low, high]
    weight_decay: {quniform: [0.0, 0.1, 0.01]}   # float, uniform in [low, high] rounded to a multiple of q
    n_layer:    {randint: [1, 4]}                # integer in [low, high], both ends included
    n_embd:     {choice: [32, 64, 128]}          # one of the values
    batch_size: {grid: [8, 16]}                  # every value, crossed with the other grid dimensions

HyperOpt takes the first five; ``grid`` needs the ``grid`` or ``random`` search algorithm (the spec checks
that before anything starts).

A name that starts with ``ignored_`` (e.g. ``ignored_knob: {uniform: [0, 1]}``) is sampled, recorded in the
results and analysed like any other hyperparameter, but never reaches the trainer: a control knob that cannot
matter, so ``textune analyze`` should find its share within chance.
"""

from __future__ import annotations

import math
from typing import Any

import pydantic

from textune.config import StrictModel

KINDS = ("uniform", "loguniform", "quniform", "randint", "choice", "grid")


class Dimension(StrictModel):
    """One searched hyperparameter: exactly one of the kinds below is set."""

    uniform: list[float] | None = None
    loguniform: list[float] | None = None
    quniform: list[float] | None = None
    randint: list[int] | None = None
    choice: list[Any] | None = None
    grid: list[Any] | None = None

    @pydantic.model_validator(mode="after")
    def _one_valid_kind(self) -> "Dimension":
        given = [kind for kind in KINDS if getattr(self, kind) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of {', '.join(KINDS)} (got {', '.join(given) or 'none'})")
        kind, values = self.kind, self.values
        if kind in ("choice", "grid"):
            if not values:
                raise ValueError(f"{kind} needs at least one value")
            return self
        arity = 3 if kind == "quniform" else 2
        if len(values) != arity:
            shape = "[low, high, q]" if arity == 3 else "[low, high]"
            raise ValueError(f"{kind} takes {shape}, got {len(values)} numbers")
        low, high = values[0], values[1]
        if not all(math.isfinite(v) for v in values):
            raise ValueError(f"{kind} bounds must be finite numbers")
        if not low < high:
            raise ValueError(f"{kind} range [{low}, {high}] is empty or inverted: low must be below high")
        if kind == "loguniform" and low <= 0:
            raise ValueError(f"loguniform range [{low}, {high}] must lie above 0 (log of {low} is undefined)")
        if kind == "quniform" and values[2] <= 0:
            raise ValueError(f"quniform step q = {values[2]} must be positive")
        return self

    @property
    def kind(self) -> str:
        return next(kind for kind in KINDS if getattr(self, kind) is not None)

    @property
    def values(self) -> list[Any]:
        return list(getattr(self, self.kind))

    def to_tune(self) -> Any:
        """The Ray Tune domain (or grid_search marker) for this dimension."""
        from ray import tune

        values = self.values
        if self.kind == "uniform":
            return tune.uniform(values[0], values[1])
        if self.kind == "loguniform":
            return tune.loguniform(values[0], values[1])
        if self.kind == "quniform":
            return tune.quniform(values[0], values[1], values[2])
        if self.kind == "randint":
            # Ray's upper bound is exclusive; the spec's is inclusive (randint: [1, 4] may give 4).
            return tune.randint(values[0], values[1] + 1)
        if self.kind == "choice":
            return tune.choice(values)
        return tune.grid_search(values)

    def extremes(self) -> list[Any]:
        """The values at the edges of this dimension (every value of a choice or grid)."""
        values = self.values
        if self.kind in ("choice", "grid"):
            return values
        return [values[0], values[1]]


SearchSpace = dict[str, Dimension]

# Searched keys with this prefix are control knobs: sampled and recorded, never passed to the trainer.
IGNORED_PREFIX = "ignored_"


def trainer_params(sampled: dict[str, Any]) -> dict[str, Any]:
    """The sampled hyperparameters the trainer receives: all but the ``ignored_`` control knobs."""
    return {name: value for name, value in sampled.items() if not name.startswith(IGNORED_PREFIX)}


def to_param_space(space: SearchSpace) -> dict[str, Any]:
    """Compile the grammar to the ``param_space`` the Tuner (and HyperOptSearch) accepts."""
    return {name: dimension.to_tune() for name, dimension in space.items()}


def grid_size(space: SearchSpace) -> int:
    """How many configurations the grid dimensions cross to (1 without grid dimensions)."""
    return math.prod(len(d.values) for d in space.values() if d.kind == "grid")


def validation_samples(space: SearchSpace) -> list[dict[str, Any]]:
    """Configurations that together touch every edge of every dimension.

    The first sample takes each dimension's first edge; each further one moves a single dimension to another
    edge. Validating these against the trial config catches a bad bound or choice before any trial starts.
    """
    base = {name: dimension.extremes()[0] for name, dimension in space.items()}
    samples = [base]
    for name, dimension in space.items():
        samples.extend({**base, name: value} for value in dimension.extremes()[1:])
    return samples
