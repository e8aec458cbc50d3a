"""Typed configs validated at the boundary.

Configs are pydantic models that forbid unknown keys. :func:`validate` turns a
plain dict (from YAML or the command line) into such a model and converts
pydantic's errors into one :class:`TextuneError` that names the dotted field,
says what was expected and, for unknown keys, suggests the closest valid name.
Inside the program configs are plain, already-validated data.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, Iterable, Mapping, TypeVar

import pydantic
import yaml

from textune.errors import TextuneError

ModelT = TypeVar("ModelT", bound=pydantic.BaseModel)


class StrictModel(pydantic.BaseModel):
    """Base for every config: unknown keys are errors, values are checked on assignment."""

    model_config = pydantic.ConfigDict(extra="forbid", validate_assignment=True, frozen=False)


def did_you_mean(name: str, candidates: Iterable[str]) -> str:
    """A ' Did you mean "x"?' suffix, or '' when nothing is close."""
    close = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return f' Did you mean "{close[0]}"?' if close else ""


def _model_at(model_cls: type[pydantic.BaseModel], loc: tuple[Any, ...]) -> type[pydantic.BaseModel] | None:
    """The nested model class that owns the field at ``loc`` (for listing valid keys)."""
    current: Any = model_cls
    for part in loc:
        if not (isinstance(current, type) and issubclass(current, pydantic.BaseModel)):
            return None
        field = current.model_fields.get(str(part))
        if field is None:
            return None
        annotation = field.annotation
        current = annotation if isinstance(annotation, type) else None
    return current if isinstance(current, type) and issubclass(current, pydantic.BaseModel) else None


def _describe(error: Mapping[str, Any], model_cls: type[pydantic.BaseModel], where: str) -> str:
    loc = tuple(error["loc"])
    dotted = ".".join(str(p) for p in loc)
    if error["type"] == "extra_forbidden":
        owner = _model_at(model_cls, loc[:-1])
        valid = sorted(owner.model_fields) if owner else []
        suggestion = did_you_mean(str(loc[-1]), valid)
        listing = f" Valid keys here: {', '.join(valid)}." if valid else ""
        return f'{where}: unknown key "{dotted}".{suggestion}{listing}'
    if error["type"] == "missing":
        return f'{where}: required key "{dotted}" is missing. Add it.'
    message = error["msg"]
    if message.startswith("Value error, "):
        message = message[len("Value error, "):]
    if not loc:
        # A check across several keys (a model validator) belongs to no single field: its message names them.
        return f"{where}: {message}."
    given = error.get("input")
    shown = repr(given) if not isinstance(given, (dict, list)) else type(given).__name__
    return f'{where}: "{dotted}" = {shown} is invalid: {message}.'


def validate(model_cls: type[ModelT], data: Any, where: str) -> ModelT:
    """Build ``model_cls`` from ``data`` or raise one TextuneError naming the field.

    ``where`` names the source for the message, e.g. ``"job spec jobs/a.yaml"``.
    """
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise TextuneError(
            f"{where}: expected a mapping of keys to values, got {type(data).__name__}.",
            "Write the config as YAML key: value pairs.",
        )
    try:
        return model_cls.model_validate(dict(data))
    except pydantic.ValidationError as exc:
        problems = [_describe(e, model_cls, where) for e in exc.errors()]
        first, rest = problems[0], problems[1:]
        more = f" ({len(rest)} more: " + " ".join(rest) + ")" if rest else ""
        raise TextuneError(first + more, "Fix the config and run the command again.") from exc


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping from a file with the safe loader (no arbitrary Python objects)."""
    path = Path(path)
    if not path.is_file():
        raise TextuneError(f"config file {path} does not exist.", "Check the path.")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise TextuneError(f"config file {path} is not UTF-8 text (byte offset {exc.start}).",
                           "Save it as UTF-8.") from exc
    return parse_yaml(text, f"config file {path}")


def parse_yaml(text: str, where: str) -> dict[str, Any]:
    """A YAML mapping from ``text`` with the safe loader; ``where`` names the source in messages."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        if isinstance(exc, yaml.constructor.ConstructorError):
            # A tag such as !!python/object/apply would build (or run) Python objects; the safe loader refuses it.
            raise TextuneError(f"{where}{at} holds a YAML tag that is not plain data: {exc.problem}.",
                               "Remove the tag; textune reads plain YAML values only.") from exc
        raise TextuneError(f"{where} is not valid YAML{at}: {getattr(exc, 'problem', exc)}.",
                           "Fix the YAML syntax.") from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise TextuneError(f"{where} must hold a mapping at the top level, not {type(data).__name__}.",
                           "Write it as key: value pairs.")
    return data


def apply_overrides(data: dict[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """Apply ``key.sub=value`` overrides (values parsed as YAML) to a nested dict, returning a copy."""
    import copy

    result = copy.deepcopy(data)
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise TextuneError(f'--set "{item}" is not of the form key=value.',
                               "Write it as --set section.key=value, e.g. --set budget.max_tokens=200000.")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        parts = key.strip().split(".")
        node = result
        for part in parts[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise TextuneError(f'--set "{item}": "{part}" holds a value, not a section, so "{key}" cannot be set.',
                                   "Set the parent key itself instead.")
            node = child
        node[parts[-1]] = value
    return result
