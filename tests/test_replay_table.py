"""Learning-curve tables and the lookup behind replays: manifest and checksum, recorded against extrapolated
evaluations, and the fills' error on configurations held out of a table. Nothing here starts Ray."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from benchmarks.bench_search_sim import TABLES
from support.replay import EVAL_EVERY, hand_table, smooth_metric, smooth_table
from textune.errors import TextuneError
from tune_jobs.replay.lookup import CurveLookup, held_out_error
from tune_jobs.replay.table import CURVES_FILE, MANIFEST_FILE, config_id, load_table, write_table


def test_table_round_trip_keeps_curves_and_records_its_checksum(tmp_path: Path) -> None:
    table = smooth_table([1e-3, 1e-2], [32, 64])
    write_table(table, tmp_path / "table")
    manifest = json.loads((tmp_path / "table" / MANIFEST_FILE).read_text())
    assert manifest["rows"] == 32 and manifest["configs"] == 4 and manifest["metric"] == "val_bpc"
    assert len(manifest["parquet_sha256"]) == 64
    assert manifest["packages"]["ray"] and manifest["machine"]["cpu_count"] >= 1
    assert manifest["spec"]["space"]["lr"] == {"grid": [1e-3, 1e-2]}
    loaded = load_table(tmp_path / "table")
    pd.testing.assert_frame_equal(loaded.curves, table.curves)
    assert loaded.best_value() == pytest.approx(
        min(smooth_metric(lr, w, 8192) for lr in (1e-3, 1e-2) for w in (32, 64))
    )


def test_a_table_whose_parquet_changed_fails_its_checksum(tmp_path: Path) -> None:
    write_table(smooth_table([1e-3, 1e-2], [32, 64]), tmp_path / "table")
    path = tmp_path / "table" / CURVES_FILE
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(TextuneError, match="fails its checksum") as error:
        load_table(tmp_path / "table")
    assert str(path) in error.value.paragraph() and "Rebuild the table" in error.value.paragraph()


def test_a_directory_without_a_manifest_is_not_a_table(tmp_path: Path) -> None:
    with pytest.raises(TextuneError, match="is not a learning-curve table"):
        load_table(tmp_path)


def _edited(**changes: object):
    """A damage that sets manifest keys; ``spec__metric`` sets the nested ``spec.metric``."""

    def edit(manifest: dict) -> str:
        for key, value in changes.items():
            *parents, last = key.split("__")
            node = manifest
            for parent in parents:
                node = node[parent]
            node[last] = value
        return json.dumps(manifest)

    return edit


def _without(key: str):
    return lambda manifest: json.dumps({k: v for k, v in manifest.items() if k != key})


# (id, damage: the written manifest -> the file's new text (bytes for raw content), fragments of the paragraph)
MALFORMED_MANIFESTS = [
    (
        "checksum-of-the-wrong-type",
        lambda m: '{"parquet_sha256": 5}',
        ['"parquet_sha256" = 5 is invalid: expected text'],
    ),
    ("not-json", lambda m: '{"format": 1,', ["is not valid JSON (line 1, column 14"]),
    ("not-utf8", lambda m: b"\xff\xfe{}", ["is not UTF-8 text (byte 0)"]),
    ("a-list", lambda m: "[1, 2, 3]", ["is not a JSON object (it holds [1, 2, 3])"]),
    ("null", lambda m: "null", ["is not a JSON object (it holds None)"]),
    ("missing-metric", _without("metric"), ['required key "metric" is missing']),
    (
        "unknown-key",
        _edited(parquet_sha265="0" * 64),
        ['unknown key "parquet_sha265"', 'Did you mean "parquet_sha256"'],
    ),
    ("checksum-not-hex", _edited(parquet_sha256="abc"), ["\"parquet_sha256\" = 'abc' is invalid"]),
    ("negative-count", _edited(configs=-1), ['"configs" = -1 is invalid']),
    ("spec-key-of-the-wrong-type", _edited(spec__budget__max_tokens="lots"), ["\"spec.budget.max_tokens\" = 'lots'"]),
    ("metric-not-the-specs", _edited(metric="val_ppl"), ["\"metric\" = 'val_ppl' differs from its spec's 'val_bpc'"]),
    ("params-not-the-specs", _edited(params=["lr"]), ["\"params\" = ['lr'] differs from its spec's ['lr', 'width']"]),
    # Consistent with its spec, but the curves were recorded without that metric.
    ("metric-not-in-the-curves", _edited(metric="val_ppl", spec__metric="val_ppl"), ["lacks the column(s) val_ppl"]),
]


@pytest.mark.parametrize(
    ("damage", "fragments"), [case[1:] for case in MALFORMED_MANIFESTS], ids=[case[0] for case in MALFORMED_MANIFESTS]
)
def test_a_malformed_manifest_is_refused_in_one_paragraph_naming_file_and_key(
    damage, fragments: list[str], tmp_path: Path
) -> None:
    """Every reader of a table (textune replay, the benchmarks' --table) goes through load_table: a manifest
    of the wrong shape is one TextuneError naming the file and the key, never a TypeError or KeyError."""
    directory = tmp_path / "table"
    write_table(smooth_table([1e-3, 1e-2], [32, 64]), directory)
    path = directory / MANIFEST_FILE
    content = damage(json.loads(path.read_text()))
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(TextuneError) as error:
        load_table(directory)
    paragraph = error.value.paragraph()
    for fragment in [str(path), *fragments]:
        assert fragment in paragraph, paragraph
    assert paragraph.endswith(
        f"Rebuild the table: delete {directory} and run textune replay on its experiment again "
        "(or re-record it with benchmarks/record_table.py)."
    )


@pytest.mark.parametrize("directory", sorted(p.parent for p in TABLES.glob("*/manifest.json")), ids=lambda p: p.name)
def test_every_committed_table_reads_back_with_its_manifest_unchanged(directory: Path) -> None:
    """The committed recordings (benchmarks/tables/) meet the manifest model as written, key for key."""
    table = load_table(directory)
    assert table.manifest == json.loads((directory / MANIFEST_FILE).read_text())
    assert table.spec.metric == table.metric == "val_bpc" and len(table.curves) == table.manifest["rows"]


def test_config_ids_ignore_seed_and_control_knobs() -> None:
    assert config_id({"lr": 0.1, "seed": 1}) == config_id({"lr": 0.1, "seed": 2})
    assert config_id({"lr": 0.1, "ignored_knob": 0.3}) == config_id({"lr": 0.1, "ignored_knob": 0.9})
    assert config_id({"lr": 0.1}) != config_id({"lr": 0.2})


@pytest.mark.parametrize("fill", ["nearest", "surrogate"])
def test_recorded_evaluations_are_exact_and_others_are_marked_extrapolated(fill: str) -> None:
    lookup = CurveLookup(smooth_table([1e-3, 1e-2], [32, 64]), fill)  # type: ignore[arg-type]
    recorded = lookup.evaluation({"lr": 1e-2, "width": 64}, 3 * EVAL_EVERY)
    assert not recorded.extrapolated
    assert recorded.metric == pytest.approx(smooth_metric(1e-2, 64, 3 * EVAL_EVERY))
    guessed = lookup.evaluation({"lr": 1.1e-2, "width": 64}, 3 * EVAL_EVERY)
    assert guessed.extrapolated and guessed.wall_s == 1.0
    if fill == "nearest":  # the nearest recorded configuration in normalised (log lr) space
        assert guessed.metric == pytest.approx(smooth_metric(1e-2, 64, 3 * EVAL_EVERY))


def test_several_recorded_seeds_are_picked_by_the_replay_seed() -> None:
    config = {"lr": 1e-2}
    table = hand_table(
        {"lr": {"grid": [1e-2, 1e-3]}},
        [(config, 0, [2.0, 1.0], [1, 1]), (config, 1, [2.5, 1.5], [1, 1]), ({"lr": 1e-3}, 0, [3.0, 2.0], [1, 1])],
    )
    lookup = CurveLookup(table)
    assert [lookup.evaluation(config, 2048, seed).metric for seed in (0, 1, 2, 3)] == [1.0, 1.5, 1.0, 1.5]
    # A seed's curve that ASHA stopped early: later evaluations come from a seed that got there, still recorded.
    stopped = hand_table(
        {"lr": {"grid": [1e-2, 1e-3]}},
        [(config, 0, [2.0, 1.0], [1, 1]), (config, 1, [2.5], [1]), ({"lr": 1e-3}, 0, [3.0, 2.0], [1, 1])],
    )
    late = CurveLookup(stopped).evaluation(config, 2048, seed=1)
    assert late.metric == 1.0 and not late.extrapolated


@pytest.mark.slow
def test_the_surrogate_predicts_held_out_curves_within_its_bound() -> None:
    """On a smooth table the forest's error on configurations it never saw stays small against the metric's
    spread, and below the nearest neighbour's."""
    lrs = list(np.geomspace(1e-4, 1e-1, 12))
    table = smooth_table(lrs, [32, 64])
    spread = float(table.curves["val_bpc"].max() - table.curves["val_bpc"].min())
    surrogate, nearest = held_out_error(table, "surrogate"), held_out_error(table, "nearest")
    assert surrogate["scheme"] == "20-fold by configuration" and surrogate["evaluations"] == len(table.curves)
    assert surrogate["mae"] < 0.08 * spread, (surrogate, spread)  # measured: 5% (0.13 of 2.6 bpc)
    assert nearest["mae"] < 0.12 * spread, (nearest, spread)  # measured: 8%
    assert surrogate["mae"] < nearest["mae"]
    small = held_out_error(smooth_table([1e-3, 1e-2, 3e-2], [32]), "nearest")
    assert small["scheme"] == "leave-one-configuration-out"
