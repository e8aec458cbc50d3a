"""The search-space grammar of a job spec and its compilation to a Ray Tune ``param_space``.

A job spec's ``space:`` maps a hyperparameter name to one single-key mapping::

    lr:         {loguniform: [1.0e-4, 1.0e-2]}   # float, log-uniform in [low, high]
    dropout:    {uniform: [0.0, 0.2]}            # float, uniform in [low, high]
    weight_decay: {quniform: [0.0, 0.1, 0.01]}   # float, uniform in [low, high] rounded to a multiple of q
    n_layers:   {randint: [1, 4]}                # integer in [low, high], both ends included
    head_dim:   {choice: [16, 32, 64]}           # one of the values
    batch_size: {grid: [8, 16]}                  # every value, crossed with the other grid dimensions

HyperOpt takes the first five; ``grid`` needs the ``grid`` or ``random`` search algorithm (the spec checks
that before anything starts).

A name that starts with ``ignored_`` (e.g. ``ignored_knob: {uniform: [0, 1]}``) is sampled, recorded in the
results and analysed like any other hyperparameter, but never reaches the trainer: a control knob that cannot
matter, so ``textune analyze`` should find its share within chance.

The values of a ``choice`` or ``grid`` are plain values of one type (numbers, strings or booleans, and null beside
any of them): a results table stores one column per hyperparameter, and a column holds one type.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from typing import Any

import pydantic

from textune.config import StrictModel

KINDS = ("uniform", "loguniform", "quniform", "randint", "choice", "grid")
# A dimension with at most this many values has them all checked against the trial config; a larger one has its
# ends and their neighbours checked (plus a fractional value, for a continuous one).
ENUMERATION_LIMIT = 1000


class Dimension(StrictModel):
    """One searched hyperparameter: exactly one of the kinds below is set."""

    uniform: list[float] | None = None
    loguniform: list[float] | None = None
    quniform: list[float] | None = None
    randint: list[int] | None = None
    choice: list[Any] | None = None
    grid: list[Any] | None = None

    @pydantic.model_validator(mode="after")
    def _one_valid_kind(self) -> Dimension:
        given = [kind for kind in KINDS if getattr(self, kind) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of {', '.join(KINDS)} (got {', '.join(given) or 'none'})")
        kind, values = self.kind, self.values
        if kind in ("choice", "grid"):
            if not values:
                raise ValueError(f"{kind} needs at least one value")
            _check_one_type(kind, values)
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

    def produced_values(self) -> list[Any]:
        """Values this dimension produces, ascending for the numeric kinds: all of them where they are at most
        ENUMERATION_LIMIT (choice, grid, randint, quniform's multiples of q), else the two lowest and the two
        highest, and for uniform and loguniform their bounds around a fractional interior value."""
        values = self.values
        if self.kind in ("choice", "grid"):
            return values
        if self.kind == "randint":
            return _ends_or_all(values[0], values[1], lambda k: k)
        if self.kind == "quniform":
            low, high, q = values
            # Ray rounds its own samples inwards and HyperOpt rounds to the nearest multiple of q, which may lie
            # just outside [low, high]: k runs over both.
            return _ends_or_all(round(low / q), round(high / q), lambda k: k * q)
        low, high = values
        return [low, _fractional_between(low, high, log=self.kind == "loguniform"), high]

    def refusal(self, value: Any) -> str | None:
        """Why this dimension can never produce ``value`` (as a point to evaluate), or None if it can."""
        kind, values = self.kind, self.values
        if kind in ("choice", "grid"):
            if any(_same_value(value, v) for v in values):
                return None
            return f"is not one of its {kind} values {values}"
        if not _is_number(value) or not math.isfinite(value):
            return f"is not a number, but {kind} {values} produces numbers"
        if kind == "randint" and not float(value).is_integer():
            return f"is not a whole number, but randint {values} produces whole numbers"
        if kind == "quniform":
            steps = value / values[2]
            if not math.isclose(steps, round(steps), rel_tol=1e-9, abs_tol=1e-9):
                return f"is not a multiple of q = {values[2]}, but quniform {values} produces only those"
        low, high = values[0], values[1]
        slack = 1e-9 * max(abs(low), abs(high))  # a bound written in another float form still counts
        if not low - slack <= value <= high + slack:
            return f"lies outside {kind} {values}"
        return None


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


def base_sample(space: SearchSpace) -> dict[str, Any]:
    """Each dimension's first produced value (its lowest, for the numeric kinds)."""
    return {name: dimension.produced_values()[0] for name, dimension in space.items()}


def validation_samples(space: SearchSpace) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """``(sample, varied)`` pairs that together touch every value each dimension produces, and every pair of two
    dimensions' edge values; ``varied`` holds the sampled values that differ from the base sample.

    The first sample is :func:`base_sample`; then one dimension at a time takes each of its produced values,
    then two dimensions at a time take their lowest two and highest two values (a rule between two keys, such
    as rotary positions needing an even head_dim, shows there). Validating these against the trial config
    catches a bad bound, choice or step before any trial starts.
    """
    base = base_sample(space)
    produced = {name: dimension.produced_values() for name, dimension in space.items()}
    samples: list[tuple[dict[str, Any], dict[str, Any]]] = [(base, {})]
    for name, values in produced.items():
        samples.extend(({**base, name: value}, {name: value}) for value in values[1:])
    edges = {name: _distinct(values[:2] + values[-2:]) for name, values in produced.items()}
    for first, second in itertools.combinations(space, 2):
        for a, b in itertools.product(edges[first], edges[second]):
            samples.append(({**base, first: a, second: b}, {first: a, second: b}))
    return samples


def _distinct(values: list[Any]) -> list[Any]:
    kept: list[Any] = []
    for value in values:
        if not any(_same_value(value, other) for other in kept):
            kept.append(value)
    return kept


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _same_value(a: Any, b: Any) -> bool:
    """Equal and of the same kind: True is not 1 here, although Python says so."""
    return isinstance(a, bool) == isinstance(b, bool) and a == b


def _value_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if _is_number(value):
        return "number"
    return "string" if isinstance(value, str) else type(value).__name__


def _check_one_type(kind: str, values: list[Any]) -> None:
    """Refuse choice/grid values that are not plain, not finite, or of mixed types (null may join any type)."""
    for value in values:
        if isinstance(value, (list, dict)):
            raise ValueError(
                f"{kind} value {value!r} is a {'list' if isinstance(value, list) else 'mapping'}; "
                f"{kind} values are plain numbers, strings, booleans or null"
            )
        if _is_number(value) and not math.isfinite(value):
            raise ValueError(f"{kind} value {value} is not a finite number")
    types = sorted({_value_type(value) for value in values} - {"null"})
    if len(types) > 1:
        raise ValueError(
            f"{kind} values mix {' and '.join(types)} ({values}); the results store one type per "
            f"hyperparameter, so give values of one type (null may join them)"
        )
    if types and types[0] not in ("number", "string", "boolean"):
        raise ValueError(f"{kind} values must be numbers, strings, booleans or null, not {types[0]}")


def _ends_or_all(low: int, high: int, value_of: Callable[[int], Any]) -> list[Any]:
    """``value_of(k)`` for every k in [low, high], or for the two lowest and two highest beyond the limit."""
    if high - low + 1 <= ENUMERATION_LIMIT:
        return [value_of(k) for k in range(low, high + 1)]
    return [value_of(k) for k in (low, low + 1, high - 1, high)]


def _fractional_between(low: float, high: float, log: bool) -> float:
    """A readable value strictly between low and high that is not a whole number (for integer-only keys)."""
    for fraction in (0.37, 0.5, 0.73):
        value = math.exp(math.log(low) + fraction * math.log(high / low)) if log else low + fraction * (high - low)
        rounded = float(f"{value:.4g}")
        if low < rounded < high and not rounded.is_integer():
            return rounded
    return math.nextafter(low, high)
