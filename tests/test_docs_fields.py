"""The docs' key tables list exactly the config models' fields, with the types, ranges, defaults and
descriptions of the fields (issue #16, point 5: one source of truth per key)."""

from __future__ import annotations

import re

import pydantic
import pytest

from data_pipeline.config import DataConfig
from models.config import CATEGORIES, TrialConfig, category_of
from support.doc_tables import DOCS, MARKER, REPO_ROOT, Table, number, parse_marker, regenerate, type_and_default
from tune_jobs.spec import Budget, JobSpec, Resources, SchedulerConfig, SearchConfig

# Every config a user writes, and where its table is: a model missing here or there fails the coverage test.
DOCUMENTED = {
    JobSpec: "docs/job-spec.md",
    Budget: "docs/job-spec.md",
    SearchConfig: "docs/job-spec.md",
    SchedulerConfig: "docs/job-spec.md",
    Resources: "docs/job-spec.md",
    TrialConfig: "docs/models.md",
    DataConfig: "docs/data.md",
}
REGENERATE = "PYTHONPATH=tests .venv/bin/python -m support.doc_tables"
ROW_KEY = re.compile(r"^\| `(?P<key>[\w.]+)` \|", re.MULTILINE)


@pytest.mark.parametrize("page", DOCS)
def test_the_tables_are_generated_from_the_fields(page: str) -> None:
    text = (REPO_ROOT / page).read_text(encoding="utf-8")
    assert MARKER.search(text), f"{page} has no generated table"
    assert regenerate(text) == text, f"{page}'s key tables differ from the models' fields; run: {REGENERATE}"


def _listed_keys() -> dict[type[pydantic.BaseModel], list[str]]:
    """The keys the docs' tables list (their first column), per model, read from the markdown."""
    listed: dict[type[pydantic.BaseModel], list[str]] = {}
    for page in DOCS:
        for match in MARKER.finditer((REPO_ROOT / page).read_text(encoding="utf-8")):
            model = parse_marker(match["target"], match["options"]).model
            assert DOCUMENTED.get(model) == page, f"{page} documents {model.__name__}; add it to DOCUMENTED"
            listed.setdefault(model, []).extend(ROW_KEY.findall(match["body"]))
    return listed


def test_the_docs_list_every_field_of_every_config_exactly_once() -> None:
    listed = _listed_keys()
    assert set(listed) == set(DOCUMENTED)
    for model, keys in listed.items():
        flatten = model is DataConfig
        expected = [
            key
            for key, _ in parse_marker(f"{model.__module__}.{model.__name__}", " flatten" if flatten else "").fields()
        ]
        assert sorted(keys) == sorted(expected), model.__name__
    assert "tokenizer.vocab_size" in listed[DataConfig] and "split.test" in listed[DataConfig]


def test_each_trial_config_category_has_its_own_table_under_its_meaning() -> None:
    text = (REPO_ROOT / "docs/models.md").read_text(encoding="utf-8")
    for name, category in CATEGORIES.items():
        resume = "may change on resume" if category.resumable else "fixed on resume"
        line = next(line for line in text.splitlines() if line.startswith(f"**{name}**: "))
        assert line.endswith(f"; {resume}."), line
        table = text[text.index(line) :].split("\n\n", 2)[1]
        assert {category_of(key) for key in ROW_KEY.findall(table)} == {category}


CELLS = [
    (TrialConfig, "lr", "float > 0, default 0.001"),
    (TrialConfig, "dataset_dir", "string (not empty), required"),
    (TrialConfig, "seed", "int 0 … 2³² − 1, default 1337"),
    (TrialConfig, "max_tokens", "int 1 … 10¹⁵, default 1 000 000"),
    (TrialConfig, "eval_max_blocks", "int 1 … 2³¹ − 1, default 64"),
    (TrialConfig, "dropout", "float in [0, 1), default 0.0"),
    (TrialConfig, "family", "string, default `transformer`"),
    (TrialConfig, "compile", "bool, default `false`"),
    (TrialConfig, "num_threads", "int 1 … 1024, default unset"),
    (TrialConfig, "anneal_at_tokens", "list of ints (at most 1000), default `[]`"),
    (Budget, "eval_every_tokens", "int 1 … 10¹⁵, default `max_tokens / 16` rounded up"),
    (SearchConfig, "points_to_evaluate", "list of mappings, default `[]`"),
    (JobSpec, "model", "mapping, default `{}`"),
    (JobSpec, "search", "mapping"),
]


@pytest.mark.parametrize(("model", "key", "cell"), CELLS, ids=[f"{model.__name__}.{key}" for model, key, _ in CELLS])
def test_a_cell_states_the_type_range_and_default(model: type[pydantic.BaseModel], key: str, cell: str) -> None:
    assert type_and_default(model.model_fields[key]) == cell


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (10**15, "10¹⁵"),
        (2**20, "2²⁰"),
        (2**32 - 1, "2³² − 1"),
        (65_536, "65 536"),
        (1024, "1024"),
        (31_622_400.0, "31 622 400"),
        (0.05, "0.05"),
        (1e-3, "0.001"),
    ],
)
def test_numbers_read_as_the_docs_write_them(value: float, shown: str) -> None:
    assert number(value) == shown


def test_a_field_without_a_description_is_refused() -> None:
    class Undocumented(pydantic.BaseModel):
        size: int = 3

    with pytest.raises(ValueError, match="size has no description"):
        Table(Undocumented).render()
