"""The key tables of docs/*.md, generated from the config models' fields.

A key's type, range, default and meaning are stated once, in its ``Field``; the docs show them in tables that
this module writes between two markers::

    <!-- fields: tune_jobs.spec.Budget -->                  every field of the model
    <!-- fields: data_pipeline.config.DataConfig flatten --> nested models' fields as dotted keys
    <!-- fields: models.config.TrialConfig by_category -->  a table per category (models.config.CATEGORIES)
    ...
    <!-- end fields -->

``PYTHONPATH=tests .venv/bin/python -m support.doc_tables`` (from the checkout's root) rewrites the tables;
tests/test_docs_fields.py checks that they are current. A field may set
``json_schema_extra={"shown_default": "..."}`` where its default is computed (``budget.eval_every_tokens``
follows ``max_tokens``).
"""

from __future__ import annotations

import importlib
import json
import re
import sys
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import annotated_types
import pydantic
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from models.config import Category

REPO_ROOT = Path(__file__).resolve().parents[2]
DOCS = ("docs/job-spec.md", "docs/models.md", "docs/data.md")
MARKER = re.compile(
    r"<!-- fields: (?P<target>[\w.]+)(?P<options>(?: [\w=]+)*) -->\n(?P<body>.*?)<!-- end fields -->", re.DOTALL
)
_NAMES = {bool: "bool", int: "int", float: "float", str: "string"}
_SUPERSCRIPTS = str.maketrans("0123456789", "⁰¹²³⁴⁵⁶⁷⁸⁹")


@dataclass(frozen=True)
class Table:
    """One generated table: which model, and which of its fields (``category``: one of the model's
    categories)."""

    model: type[pydantic.BaseModel]
    category: str | None = None
    flatten: bool = False
    by_category: bool = False

    def fields(self) -> list[tuple[str, FieldInfo]]:
        """(dotted key, field) of every row, in the model's field order."""
        return [
            (key, field)
            for key, field in _walk(self.model, "", self.flatten)
            if self.category is None or _extra(field).get("category") == self.category
        ]

    def render(self) -> str:
        """The markdown table, one row per field: key, type with range and default, meaning (by_category: one
        table per category of the model's module's CATEGORIES, each under a line saying what it means)."""
        if self.by_category:
            return "\n".join(
                self._category_section(name, category)
                for name, category in importlib.import_module(self.model.__module__).CATEGORIES.items()
            )
        rows = ["| key | type, default | meaning |", "| --- | --- | --- |"]
        for key, field in self.fields():
            if not field.description:
                raise ValueError(
                    f"{self.model.__name__}: the field {key} has no description; give it Field(description=...)"
                )
            rows.append(f"| `{key}` | {_escape(type_and_default(field))} | {_escape(field.description)} |")
        return "\n".join(rows) + "\n"

    def _category_section(self, name: str, category: Category) -> str:
        kind = "hyperparameters (TensorBoard's HParams)" if category.hyperparameter else "not hyperparameters"
        resume = "may change on resume" if category.resumable else "fixed on resume"
        table = Table(self.model, category=name, flatten=self.flatten)
        if not table.fields():
            raise ValueError(f"the category {name} of {self.model.__name__} has no fields")
        return f"**{name}**: {category.title}; {kind}; {resume}.\n\n{table.render()}"


def _walk(model: type[pydantic.BaseModel], prefix: str, flatten: bool) -> list[tuple[str, FieldInfo]]:
    rows = []
    for name, field in model.model_fields.items():
        nested = _plain(field.annotation)
        if flatten and isinstance(nested, type) and issubclass(nested, pydantic.BaseModel):
            rows += _walk(nested, f"{prefix}{name}.", flatten)
        else:
            rows.append((prefix + name, field))
    return rows


def _extra(field: FieldInfo) -> dict[str, Any]:
    return field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}


def _plain(annotation: Any) -> Any:
    """The annotation without ``| None``."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        return args[0] if len(args) == 1 else annotation
    return annotation


def _escape(text: str) -> str:
    return text.replace("|", "\\|")


def number(value: float) -> str:
    """A bound or default as the docs write numbers: 100 000, 10¹⁵, 2²⁰, 2³² − 1, 0.05."""
    if isinstance(value, float) and value.is_integer() and abs(value) >= 10_000:
        value = int(value)
    if isinstance(value, float):
        return repr(value)
    for base, least in ((10, 9), (2, 20)):
        for offset, suffix in ((0, ""), (1, " − 1")):
            exponent = (value + offset).bit_length() - 1 if base == 2 else len(str(value + offset)) - 1
            if exponent >= least and base**exponent == value + offset:
                return f"{base}{str(exponent).translate(_SUPERSCRIPTS)}{suffix}"
    return f"{value:,}".replace(",", " ") if value >= 10_000 else str(value)


def _type(field: FieldInfo) -> str:
    annotation = _plain(field.annotation)
    if typing.get_origin(annotation) is typing.Literal:
        return " | ".join(f"`{value}`" for value in typing.get_args(annotation))
    origin = typing.get_origin(annotation) or annotation
    if isinstance(origin, type) and issubclass(origin, (dict, pydantic.BaseModel)):
        return "mapping"
    if origin is list:
        (item,) = typing.get_args(annotation)
        if typing.get_origin(item) is typing.Annotated:
            item = typing.get_args(item)[0]
        item = typing.get_origin(item) or item
        return " ".join([f"list of {'mappings' if item is dict else _NAMES[item] + 's'}", *_bounds(field)])
    if origin not in _NAMES:
        raise ValueError(f"no docs name for the type {annotation!r}; add one to doc_tables._NAMES")
    return " ".join([_NAMES[origin], *_bounds(field)])


def _bounds(field: FieldInfo) -> list[str]:
    found: dict[str, Any] = {}
    for item in field.metadata:
        for kind in ("ge", "gt", "le", "lt", "min_length", "max_length"):
            if getattr(item, kind, None) is not None and isinstance(item, annotated_types.BaseMetadata):
                found[kind] = getattr(item, kind)
    low = ("ge", found["ge"]) if "ge" in found else ("gt", found["gt"]) if "gt" in found else None
    high = ("le", found["le"]) if "le" in found else ("lt", found["lt"]) if "lt" in found else None
    words = []
    if low and high and low[0] == "ge" and high[0] == "le":
        words.append(f"{number(low[1])} … {number(high[1])}")
    elif low and high:
        words.append(
            f"in {'[' if low[0] == 'ge' else '('}{number(low[1])}, {number(high[1])}{']' if high[0] == 'le' else ')'}"
        )
    elif low or high:
        kind, value = low or high or ("", 0)
        words.append(f"{dict(ge='≥', gt='>', le='≤', lt='<')[kind]} {number(value)}")
    if found.get("min_length") == 1:
        words.append("(not empty)")
    if "max_length" in found:
        words.append(f"(at most {number(found['max_length'])})")
    return words


def _default(field: FieldInfo) -> str:
    if "shown_default" in _extra(field):
        return str(_extra(field)["shown_default"])
    value = field.get_default(call_default_factory=True)
    if value is PydanticUndefined:
        return "required"
    if value is None:
        return "unset"
    if isinstance(value, pydantic.BaseModel):
        return ""
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, (int, float)):
        return number(value)
    return f"`{json.dumps(value) if isinstance(value, (list, dict)) else value}`"


def type_and_default(field: FieldInfo) -> str:
    """The table's second column: ``int 1 … 1024, default 4``, ``mapping, required``."""
    default = _default(field)
    shown = "required" if default == "required" else f"default {default}" if default else ""
    return ", ".join(part for part in (_type(field), shown) if part)


def parse_marker(target: str, options: str) -> Table:
    """The table a marker names (``MODULE.CLASS`` and its options)."""
    module, _, name = target.rpartition(".")
    model = getattr(importlib.import_module(module), name)
    settings = dict(option.partition("=")[::2] for option in options.split())
    unknown = set(settings) - {"flatten", "by_category"}
    if unknown:
        raise ValueError(f"unknown option {sorted(unknown)} in the fields marker of {target}")
    return Table(model, flatten="flatten" in settings, by_category="by_category" in settings)


def regenerate(text: str) -> str:
    """``text`` with every table between markers written afresh."""

    def fill(match: re.Match[str]) -> str:
        table = parse_marker(match["target"], match["options"])
        return f"<!-- fields: {match['target']}{match['options']} -->\n{table.render()}<!-- end fields -->"

    return MARKER.sub(fill, text)


def main() -> None:
    for name in DOCS:
        path = REPO_ROOT / name
        text = path.read_text(encoding="utf-8")
        fresh = regenerate(text)
        if fresh != text:
            path.write_text(fresh, encoding="utf-8")
            print(f"rewrote the tables of {name}", file=sys.stderr)


if __name__ == "__main__":
    main()
