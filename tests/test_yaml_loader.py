"""The one YAML loader (textune.config): spec files, saved specs and --set values read alike.

YAML 1.2 floats everywhere, and hostile documents (duplicate keys, aliases, deep nesting, tags) refused with
one message naming the line, quickly. Pure parsing: nothing here starts Ray.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from support.jobs import ALIAS_BOMB, QUICKSTART
from textune.config import MAX_YAML_DEPTH, apply_overrides, dump_yaml, parse_yaml, parse_yaml_value
from textune.errors import TextuneError
from tune_jobs.spec import load_spec


@pytest.mark.parametrize(
    "text, value",
    [
        ("1e-3", 0.001),
        ("3e-3", 0.003),
        ("3E5", 300000.0),
        ("+1e3", 1000.0),
        ("-2.5e-1", -0.25),
        ("1.0e-4", 0.0001),
        (".5", 0.5),
        ("1.", 1.0),
        ("1_000.5", 1000.5),
        (".inf", float("inf")),
        # Integers stay integers, text stays text.
        ("1000", 1000),
        ("1_000_000", 1000000),
        ("-3", -3),
        ("'1e-3'", "1e-3"),
        ("e3", "e3"),
        ("1e", "1e"),
        ("1e-3x", "1e-3x"),
        ("rotary", "rotary"),
        ("null", None),
        ("true", True),
    ],
)
def test_scalars_read_as_yaml_1_2(text: str, value: Any) -> None:
    parsed = parse_yaml_value(text, "test")
    assert parsed == value and type(parsed) is type(value)


def test_floats_are_numbers_in_every_section_and_in_set_values(tmp_path: Path) -> None:
    job = QUICKSTART.read_text(encoding="utf-8").replace(
        "lr: {loguniform: [4.0e-3, 4.0e-2]}", "lr: {choice: [1e-3, 3e-3]}"
    )
    path = tmp_path / "job.yaml"
    path.write_text(job.replace("dropout: 0.0", "dropout: 1e-1"), encoding="utf-8")
    spec = load_spec(path, ["space.head_dim.choice=[16, 32]", "model.weight_decay=1e-2"])
    assert spec.space["lr"].values == [0.001, 0.003] and all(type(v) is float for v in spec.space["lr"].values)
    assert spec.model["dropout"] == 0.1 and spec.model["weight_decay"] == 0.01
    assert apply_overrides({}, ["space.lr.choice=[1e-3, 3e-3]"]) == {"space": {"lr": {"choice": [0.001, 0.003]}}}


def refused(text: str, where: str = "job spec j.yaml") -> tuple[str, float]:
    """The one-paragraph message for ``text`` and how long the loader took to refuse it."""
    start = time.perf_counter()
    with pytest.raises(TextuneError) as info:
        parse_yaml(text, where)
    return info.value.paragraph(), time.perf_counter() - start


@pytest.mark.parametrize(
    "text, line, key",
    [
        ("num_samples: 4\nname: a\nnum_samples: 400\n", 3, "num_samples"),
        ("budget:\n  max_tokens: 10\n  eval_every_tokens: 5\n  max_tokens: 20\n", 4, "max_tokens"),
        ("space: {lr: {uniform: [0, 1]}, lr: {choice: [1]}}\n", 1, "lr"),
    ],
)
def test_duplicate_keys_are_refused_naming_the_key_and_line(text: str, line: int, key: str) -> None:
    message, _ = refused(text)
    assert message.startswith(f"job spec j.yaml at line {line}") and f'repeats the key "{key}"' in message


def test_an_alias_bomb_is_refused_in_well_under_a_second() -> None:
    message, seconds = refused(ALIAS_BOMB)
    assert seconds < 1.0
    assert message.startswith("job spec j.yaml at line 2, column 8 uses the YAML alias *a")
    assert "without anchors and aliases" in message


def test_a_single_alias_is_refused_too() -> None:
    message, _ = refused("model: &m {n_layers: 2}\nother: *m\n")
    assert "line 2" in message and "alias *m" in message


@pytest.mark.parametrize(
    "text",
    [
        "[" * 20000 + "]" * 20000,  # flow style
        "a:\n" + "".join(" " * level + "- \n" for level in range(1, 20001)),  # block style
        "x: " + "{a: " * 20000 + "1" + "}" * 20000,
    ],
    ids=["flow-lists", "block-lists", "flow-mappings"],
)
def test_deep_nesting_is_refused_without_recursion_error(text: str) -> None:
    message, seconds = refused(text)
    assert f"more than {MAX_YAML_DEPTH} levels deep" in message
    assert seconds < 5.0  # the parser reads the document once; nothing recurses per level


def test_nesting_up_to_the_limit_is_read() -> None:
    depth = MAX_YAML_DEPTH - 1  # the top-level mapping is one level
    assert parse_yaml("x: " + "[" * depth + "1" + "]" * depth, "test")["x"] is not None


@pytest.mark.parametrize(
    "value", ["!!python/name:os.system", "!!python/object/apply:os.system ['true']", "!custom value"]
)
def test_tags_in_set_values_are_refused_as_in_spec_files(value: str) -> None:
    with pytest.raises(TextuneError) as from_set:
        apply_overrides({}, [f"storage={value}"])
    assert from_set.value.paragraph().startswith(
        f'--set "storage={value}": the value at line 1, column 1 holds a YAML tag that is not plain data'
    )
    message, _ = refused(f"storage: {value}\n")
    assert "holds a YAML tag that is not plain data" in message


@pytest.mark.parametrize(
    "item, fragment",
    [
        ("x=*a", "uses the YAML alias *a"),
        ("x={a: 1, a: 2}", 'repeats the key "a"'),
        ("x=[1, 2", "is not valid YAML"),
    ],
)
def test_set_values_go_through_the_same_loader(item: str, fragment: str) -> None:
    with pytest.raises(TextuneError) as info:
        apply_overrides({}, [item])
    assert info.value.paragraph().startswith(f'--set "{item}": the value') and fragment in info.value.paragraph()


def test_dumped_yaml_reads_back_unchanged() -> None:
    # Text that YAML 1.1 leaves unquoted but the loader reads as a number (a name "1e3") must stay text.
    data = {"name": "1e3", "values": [1e-05, 0.001, "3e-3", None, True, "yes"], "shared": [1, 2]}
    data["again"] = data["shared"]  # the same list twice is written out twice, never as an alias
    text = dump_yaml(data)
    assert "*" not in text and "&" not in text
    assert parse_yaml(text, "test") == data
