"""Typed configs validated at the boundary.

Configs are pydantic models that forbid unknown keys. :func:`validate` turns a
plain dict (from YAML or the command line) into such a model and converts
pydantic's errors into one :class:`TextuneError` that names the dotted field,
says what was expected and, for unknown keys, suggests the closest valid name.
Inside the program configs are plain, already-validated data.
"""

from __future__ import annotations

import difflib
import re
import reprlib
import types
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import pydantic
import yaml

from textune.errors import TextuneError

ModelT = TypeVar("ModelT", bound=pydantic.BaseModel)


class StrictModel(pydantic.BaseModel):
    """Base for every config: unknown keys are errors, values are checked on assignment."""

    model_config = pydantic.ConfigDict(extra="forbid", validate_assignment=True, frozen=False)

    @pydantic.field_validator("*", mode="before")
    @classmethod
    def _no_truth_value_for_a_number(cls, value: Any, info: pydantic.ValidationInfo) -> Any:
        # pydantic reads true as 1 where a number is expected: `num_samples: yes` would quietly run one sample.
        if isinstance(value, bool) and info.field_name and _numbers_only(cls.model_fields[info.field_name].annotation):
            raise ValueError("expected a number, not true or false")
        return value


def _numbers_only(annotation: Any) -> bool:
    """Whether a field of this type takes numbers (int, float) but not true/false."""
    kinds = (
        set(typing.get_args(annotation))
        if typing.get_origin(annotation) in (typing.Union, types.UnionType)
        else {annotation}
    )
    return bool(kinds & {int, float}) and not kinds & {bool, Any}


def closest(name: str, candidates: Iterable[str]) -> str | None:
    """The candidate most like ``name`` (a likely typo of it), or None when nothing is close."""
    close = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return close[0] if close else None


# A field whose json_schema_extra holds {SUGGESTED: False} is accepted but never offered in "Valid keys here"
# lists and did-you-mean suggestions: test-only keys (fault injection) a user should not be steered to.
SUGGESTED = "suggested"


def suggested_keys(model: type[pydantic.BaseModel]) -> list[str]:
    """The keys of ``model`` that messages offer, sorted (all but those marked ``{SUGGESTED: False}``)."""
    return sorted(
        name
        for name, field in model.model_fields.items()
        if not isinstance(field.json_schema_extra, dict) or field.json_schema_extra.get(SUGGESTED, True)
    )


def did_you_mean(name: str, candidates: Iterable[str]) -> str:
    """A ' Did you mean "x"?' suffix, or '' when nothing is close."""
    close = closest(name, candidates)
    return f' Did you mean "{close}"?' if close else ""


# A value given for a key is shown in messages cut to about this many characters (a message stays one paragraph).
SHOWN_VALUE_CHARS = 60
_SHOWN = reprlib.Repr()  # Python 3.11's takes no arguments
_SHOWN.maxlevel, _SHOWN.maxdict, _SHOWN.maxlist, _SHOWN.maxtuple = 2, 4, 6, 6
_SHOWN.maxstring = _SHOWN.maxother = SHOWN_VALUE_CHARS
# What a value of the wrong type should have been, for pydantic's type errors (its own words name Python types).
_EXPECTED = {
    "dict_type": "expected a mapping of key: value pairs",
    "list_type": "expected a list, e.g. [a, b]",
    "string_type": "expected text",
    "int_type": "expected a whole number",
    "int_parsing": "expected a whole number",
    "int_from_float": "expected a whole number, not one with a fractional part",
    "float_type": "expected a number",
    "float_parsing": "expected a number",
    "bool_type": "expected true or false",
    "bool_parsing": "expected true or false",
    "finite_number": "expected a finite number (not inf or nan)",
}


# pydantic's bound errors: the context key holding the bound, and its sign ("expected a number >= 1" where pydantic
# says "Input should be greater than or equal to 1").
_BOUNDS = {
    "greater_than": ("gt", ">"),
    "greater_than_equal": ("ge", ">="),
    "less_than": ("lt", "<"),
    "less_than_equal": ("le", "<="),
}


def _expected_by_constraint(error: Mapping[str, Any]) -> str | None:
    """What a value that broke a constraint (a bound, a choice, a length) should have been, in the user's words,
    or None for an error of another kind."""
    kind, ctx = error["type"], error.get("ctx") or {}
    if kind in _BOUNDS:
        key, sign = _BOUNDS[kind]
        return f"expected a number {sign} {ctx[key]}"
    if kind in ("literal_error", "enum"):
        # ctx["expected"] is pydantic's "'a', 'b' or 'c'": the choices are its quoted parts.
        choices = re.findall(r"'([^']*)'", str(ctx.get("expected", "")))
        given = error.get("input")
        close = closest(given, choices) if isinstance(given, str) else None
        return f"expected one of {', '.join(choices)}" + (f' (did you mean "{close}"?)' if close else "")
    if kind in ("string_too_short", "too_short", "string_too_long", "too_long"):
        bound, count = (
            ("at least", ctx.get("min_length")) if kind.endswith("short") else ("at most", ctx.get("max_length"))
        )
        unit = "character" if kind.startswith("string") else "item"
        return f"expected {bound} {count} {unit}{'' if count == 1 else 's'}"
    if kind == "multiple_of":
        return f"expected a multiple of {ctx.get('multiple_of')}"
    return None


def shown_value(value: Any) -> str:
    """``value`` as messages show it: its repr, cut to about SHOWN_VALUE_CHARS characters (long text, deep or long
    lists and mappings end in ``...``)."""
    return _SHOWN.repr(value)


def _annotation_at(model_cls: type[pydantic.BaseModel], loc: tuple[Any, ...]) -> Any:
    """The type annotation of the value at ``loc`` (through nested models, lists, mappings and Optional), or None."""
    current: Any = model_cls
    for part in loc:
        current = _unwrap_optional(current)
        if isinstance(current, type) and issubclass(current, pydantic.BaseModel):
            field = current.model_fields.get(str(part))
            if field is None:
                return None
            current = field.annotation
        elif typing.get_origin(current) in (list, dict) and typing.get_args(current):
            current = typing.get_args(current)[-1]  # a list's items, a mapping's values
        else:
            return None
    return _unwrap_optional(current)


def _unwrap_optional(annotation: Any) -> Any:
    args = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and len(args) == 1:
        return args[0]
    return annotation


def _model_at(model_cls: type[pydantic.BaseModel], loc: tuple[Any, ...]) -> type[pydantic.BaseModel] | None:
    """The nested model class that owns the field at ``loc`` (for listing valid keys)."""
    found = _annotation_at(model_cls, loc)
    return found if isinstance(found, type) and issubclass(found, pydantic.BaseModel) else None


def _expected_mapping(model: type[pydantic.BaseModel]) -> str:
    """What a section ``model`` takes: its keys, and an example when every key has a plain default."""
    keys = list(model.model_fields)
    listing = f"expected a mapping with the keys {', '.join(keys)}"
    defaults = {key: field.default for key, field in model.model_fields.items()}
    if not all(isinstance(value, (str, int, float, bool)) for value in defaults.values()):
        return listing  # a required key (no default) or a nested section: the keys say enough
    flow = yaml.dump(defaults, Dumper=_Dumper, sort_keys=False, default_flow_style=True, width=1000).strip()
    return f"{listing} (e.g. {flow})"


def _dotted(loc: tuple[Any, ...]) -> str:
    """A location as a spec writes it: ``space.lr.loguniform[0]``."""
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _flag_for(loc: tuple[Any, ...], flags: Mapping[str, str]) -> tuple[str, str] | None:
    """The command-line option that gave the value at ``loc`` (by its key path, list indices left out) and the
    part of the key below it (``"val"`` of ``--split``'s ``split.val``; ``""`` when the option is the key)."""
    keys = [str(part) for part in loc if not isinstance(part, int)]
    for end in range(len(keys), 0, -1):
        flag = flags.get(".".join(keys[:end]))
        if flag is not None:
            return flag, ".".join(keys[end:])
    return None


def describe_error(
    error: Mapping[str, Any],
    model_cls: type[pydantic.BaseModel],
    flags: Mapping[str, str] | None = None,
    under: tuple[str, ...] = (),
) -> str:
    """One of pydantic's errors for ``model_cls`` as a sentence naming the key (see :func:`validate`), without
    the source. ``under`` is the section ``model_cls`` was read from, shown before the key (``("model",)``:
    ``"model.family"``)."""
    flags = flags or {}
    loc = tuple(error["loc"])
    dotted = _dotted((*under, *loc))
    if error["type"] == "extra_forbidden":
        owner = _model_at(model_cls, loc[:-1])
        valid = suggested_keys(owner) if owner else []
        suggestion = did_you_mean(str(loc[-1]), valid)
        listing = f" Valid keys here: {', '.join(valid)}." if valid else ""
        return f'unknown key "{dotted}".{suggestion}{listing}'
    if error["type"] == "missing":
        return f'required key "{dotted}" is missing. Add it.'
    message = error["msg"]
    if message.startswith("Value error, "):
        message = message[len("Value error, ") :]
    if error["type"] in ("model_type", "model_attributes_type"):
        expected = _model_at(model_cls, loc)
        message = _expected_mapping(expected) if expected else _EXPECTED["dict_type"]
    message = _EXPECTED.get(error["type"]) or _expected_by_constraint(error) or message
    if not loc:
        # A check across several keys (a model validator) belongs to no single field: its message names them,
        # and a key given on the command line by its option (dotted keys only: a plain word such as "split"
        # may be just a word in the message).
        for key, flag in flags.items():
            if "." in key:
                message = re.sub(rf"(?<![\w.]){re.escape(key)}(?![\w.])", flag, message)
        return f"{message}."
    given = error.get("input")
    option = _flag_for(loc, flags)
    if option is not None:  # a command-line option: named as typed, with its value where it is one word
        flag, below = option
        if given is None:
            return f"{flag} is not given: {message}."
        typed = str(given) if len(str(given)) <= SHOWN_VALUE_CHARS else str(given)[:SHOWN_VALUE_CHARS] + "..."
        if isinstance(given, (dict, list)):
            named = flag
        else:
            named = f"{flag} ({below} {typed})" if below else f"{flag} {typed}"
        return f"{named} is invalid: {message}."
    if given is None:
        return f'"{dotted}" is not set: {message}.'
    return f'"{dotted}" = {shown_value(given)} is invalid: {message}.'


def validate(model_cls: type[ModelT], data: Any, where: str, flags: Mapping[str, str] | None = None) -> ModelT:
    """Build ``model_cls`` from ``data`` or raise one TextuneError naming the field.

    ``where`` names the source for the message, e.g. ``"job spec jobs/a.yaml"``. A value of the wrong type is
    shown (cut to SHOWN_VALUE_CHARS) with what the key accepts. ``flags`` maps the key paths that came from a
    command line (``"tokenizer.path"``) to their options (``"--tokenizer-path"``): a problem there names the
    option and its value as typed, not the config key.
    """
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise TextuneError(
            f"{where}: expected a mapping of keys to values, got {shown_value(data)}.",
            "Write the config as YAML key: value pairs.",
        )
    try:
        return model_cls.model_validate(dict(data))
    except pydantic.ValidationError as exc:
        problems = [describe_error(e, model_cls, flags) for e in exc.errors()]
        first, rest = problems[0], problems[1:]
        # The source is named once: the further problems are in the same file or command line.
        more = f" ({len(rest)} more: " + " ".join(rest) + ")" if rest else ""
        hint = "Fix the option and run the command again." if flags else "Fix the config and run the command again."
        raise TextuneError(f"{where}: {first}{more}", hint) from exc


# Limits that keep a hostile document from hanging or crashing the loader; real configs stay far inside them.
MAX_YAML_DEPTH = 64  # nested mappings and lists (a job spec uses about five levels)

# YAML 1.2's floats: 1e-3 and 3E5 are numbers (YAML 1.1, PyYAML's default, wants a dot and an exponent sign,
# so it reads them as text). Values that resolve to a number need no dot or sign anywhere a config is read.
_FLOAT_1_2 = re.compile(
    r"""^(?:[-+]?[0-9][0-9_]*\.[0-9_]*(?:[eE][-+]?[0-9]+)?
                    |[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+
                    |[-+]?\.[0-9][0-9_]*(?:[eE][-+]?[0-9]+)?
                    |[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+\.[0-9_]*
                    |[-+]?\.(?:inf|Inf|INF)
                    |\.(?:nan|NaN|NAN))$""",
    re.VERBOSE,
)
_FLOAT_TAG = "tag:yaml.org,2002:float"


class _Refused(yaml.MarkedYAMLError):
    """A well-formed document textune will not read; ``problem`` says why and ``hint`` what to write instead."""

    def __init__(self, mark: yaml.Mark | None, problem: str, hint: str) -> None:
        super().__init__(problem=problem, problem_mark=mark)
        self.hint = hint


class _Loader(yaml.SafeLoader):
    """The safe loader (plain data only) with YAML 1.2 floats, no aliases, no duplicate keys, bounded depth."""

    yaml_implicit_resolvers = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag != _FLOAT_TAG]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }
    _depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            # An alias repeats a whole subtree by reference, so a few lines can expand to billions of values
            # (an "alias bomb"); every later step (checks, messages, the saved spec) would walk the expansion.
            # The stubs type an event's mark as the C or the Python Mark; SafeLoader, pure Python, makes the latter.
            raise _Refused(
                event.start_mark,  # type: ignore[arg-type]
                f"uses the YAML alias *{event.anchor}; textune reads configs without anchors and aliases",
                "Write the value out in full where the alias stands.",
            )
        if isinstance(event, yaml.ScalarEvent):
            return super().compose_node(parent, index)
        if self._depth >= MAX_YAML_DEPTH:
            # PyYAML composes recursively: a document nested thousands deep would end in a RecursionError.
            raise _Refused(
                event.start_mark,
                f"nests mappings or lists more than {MAX_YAML_DEPTH} levels deep",
                "Flatten the document; a job spec needs a few levels only.",
            )
        self._depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        self.flatten_mapping(node)
        seen: dict[Any, yaml.Node] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.setdefault(key, key_node)
            except TypeError:
                raise _Refused(
                    key_node.start_mark, "uses a list or mapping as a key", "Write keys as plain names."
                ) from None
            if first is not key_node:
                # YAML keeps the last of two equal keys without a word; one of them is always a mistake.
                raise _Refused(
                    key_node.start_mark,
                    f'repeats the key "{key}" (first given at line {first.start_mark.line + 1})',
                    "Keep one of the two.",
                )
        return super().construct_mapping(node, deep=deep)


_Loader.add_implicit_resolver(_FLOAT_TAG, _FLOAT_1_2, list("-+0123456789."))


class _Dumper(yaml.SafeDumper):
    """Writes what :func:`parse_yaml` reads back unchanged (quotes text such as "1e3" that it reads as a number)."""

    yaml_implicit_resolvers = _Loader.yaml_implicit_resolvers

    def ignore_aliases(self, data: Any) -> bool:
        return True  # a value used twice is written twice: the loader refuses aliases


def load_yaml(path: str | Path, what: str = "config file") -> dict[str, Any]:
    """Read a YAML mapping from a file with :func:`parse_yaml`'s loader; ``what`` names the file in messages
    (``"job spec"``). An empty file (blank or comments only) is refused: every config textune reads has required
    keys, and naming them one by one would hide that the whole file is missing its content."""
    path = Path(path)
    where = f"{what} {path}"
    if not path.is_file():
        raise TextuneError(f"{where} does not exist.", "Check the path.")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise TextuneError(f"{where} is not UTF-8 text (byte offset {exc.start}).", "Save it as UTF-8.") from exc
    data = parse_yaml_value(text, where)
    if data is None:
        raise TextuneError(f"{where} is empty: it holds no keys.", "Write its keys in it as YAML key: value pairs.")
    return _mapping(data, where)


def parse_yaml(text: str, where: str) -> dict[str, Any]:
    """A YAML mapping from ``text``; ``where`` names the source in messages.

    Every config textune reads (files, saved specs, ``--set`` values) goes through one loader: the safe loader
    (plain data, no tags), YAML 1.2 floats (``1e-3`` is a number), and a TextuneError naming the line for
    invalid syntax, a tag, an alias, a repeated key or nesting deeper than MAX_YAML_DEPTH.
    """
    data = parse_yaml_value(text, where)
    return _mapping({} if data is None else data, where)


def _mapping(data: Any, where: str) -> dict[str, Any]:
    """``data`` read from ``where``, refused unless it is a mapping (a config's top level)."""
    if not isinstance(data, dict):
        raise TextuneError(
            f"{where} must hold a mapping at the top level, not {type(data).__name__}.", "Write it as key: value pairs."
        )
    return data


def parse_yaml_value(text: str, where: str) -> Any:
    """Any YAML value from ``text`` (a number, text, list, mapping or None) with :func:`parse_yaml`'s loader."""
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 (_Loader is a SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        if isinstance(exc, _Refused):
            raise TextuneError(f"{where}{at} {exc.problem}.", exc.hint) from exc
        if isinstance(exc, yaml.constructor.ConstructorError):
            # A tag such as !!python/object/apply would build (or run) Python objects; the safe loader refuses it.
            raise TextuneError(
                f"{where}{at} holds a YAML tag that is not plain data: {exc.problem}.",
                "Remove the tag; textune reads plain YAML values only.",
            ) from exc
        raise TextuneError(
            f"{where} is not valid YAML{at}: {getattr(exc, 'problem', exc)}.", "Fix the YAML syntax."
        ) from exc


def dump_yaml(data: Any, sort_keys: bool = False) -> str:
    """``data`` as YAML text that :func:`parse_yaml` reads back as the same values."""
    return yaml.dump(data, Dumper=_Dumper, sort_keys=sort_keys, allow_unicode=True)


def apply_overrides(data: dict[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """Apply ``key.sub=value`` overrides (values parsed as YAML) to a nested dict, returning a copy."""
    import copy

    result = copy.deepcopy(data)
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise TextuneError(
                f'--set "{item}" is not of the form key=value.',
                "Write it as --set section.key=value, e.g. --set budget.max_tokens=200000.",
            )
        # The same loader as a spec file: a tag, an alias or broken syntax is refused, never kept as text.
        value = parse_yaml_value(raw, f'--set "{item}": the value') if raw.strip() else ""
        parts = key.strip().split(".")
        node = result
        for part in parts[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise TextuneError(
                    f'--set "{item}": "{part}" holds a value, not a section, so "{key}" cannot be set.',
                    "Set the parent key itself instead.",
                )
            node = child
        node[parts[-1]] = value
    return result
