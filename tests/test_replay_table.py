"""Learning-curve tables and the lookup behind replays: manifest and checksum, recorded against extrapolated
evaluations, and the fills' error on configurations held out of a table. Nothing here starts Ray."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

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
