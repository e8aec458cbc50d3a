"""Every command that reads an experiment, on a simulated search (what `textune replay` writes under
EXPERIMENT/replay/searches/SLUG/): it trained nothing, so nothing may claim or create a checkpoint or best/ there.
`best`, `analyze`, `export` and `report` read it; `generate`, `tensorboard` and `replay` refuse it in one
paragraph (exit 2, nothing written). One replay of the session's finished experiment serves the module; no Ray starts
here (the finished_experiment fixture starts it once per session)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from conftest import assert_user_error, run_textune
from support.files import snapshot
from tune_jobs.experiment import BEST_DIR, SIMULATED_FILE

pytestmark = pytest.mark.timeout(600)

SLUG = "hyperopt-asha-g1024-rf2"


@pytest.fixture(scope="module")
def replayed(finished_experiment: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the finished experiment after one replay (hyperopt+asha, one seed); read it, never write it."""
    experiment = tmp_path_factory.mktemp("replayed") / finished_experiment.name
    shutil.copytree(finished_experiment, experiment, symlinks=True)
    result = run_textune("replay", str(experiment), "--seeds", "1", "--strategy", "hyperopt+asha")
    assert result.returncode == 0, result.stderr
    return experiment


@pytest.fixture()
def simulated(replayed: Path, tmp_path: Path) -> Path:
    """A private copy of the replay's simulated search, inside a copy of its experiment's replay/ folder."""
    copy = tmp_path / "replay" / "searches" / SLUG
    shutil.copytree(replayed / "replay" / "searches" / SLUG, copy)
    return copy


def test_replay_marks_its_searches_as_simulated(replayed: Path) -> None:
    simulation = json.loads((replayed / "replay" / "searches" / SLUG / SIMULATED_FILE).read_text())
    trials = pd.read_parquet(replayed / "replay" / "searches" / SLUG / "results.parquet")
    assert simulation["replayed_from"] == str(replayed)
    assert simulation["strategy"] == "hyperopt+asha (grace 1024, rf 2)"
    assert simulation["seed"] == 0 and simulation["fill"] == "surrogate"
    assert 0.0 <= simulation["extrapolated_share"] <= 1.0
    assert trials["checkpoint"].isna().all()  # what makes the marker necessary: nothing was trained


def test_best_shows_the_config_and_says_there_is_no_checkpoint(simulated: Path, replayed: Path) -> None:
    before = snapshot(simulated)
    trials = pd.read_parquet(simulated / "results.parquet")
    best = trials.iloc[0]
    result = run_textune("best", str(simulated))
    assert result.returncode == 0, result.stderr
    text = result.stdout
    assert f"best trial {best['trial_id']} ({best['status']}, {int(best['tokens']):,} tokens): " in text
    assert f"val_bpc {best['best_val_bpc']:.4f}" in text and "nan" not in text  # no per-token ppl is replayed
    assert f"config: lr={best['config/lr']:.4g}, " in text
    assert f"simulated search (textune replay of {replayed} with hyperopt+asha (grace 1024, rf 2); " in text
    assert f"no model was trained, so there is no checkpoint and no {BEST_DIR}/." in text
    assert f"textune confirm {simulated} --top-k 1 --seeds 1" in text
    assert "copied to" not in text and "textune generate" not in text

    as_json = run_textune("best", str(simulated), "--json")
    assert as_json.returncode == 0, as_json.stderr
    summary = json.loads(as_json.stdout)
    assert summary["trial_id"] == best["trial_id"] and summary["checkpoint"] is None
    assert summary["best_metric"] == pytest.approx(best["best_metric"])
    assert summary["simulated"]["replayed_from"] == str(replayed)
    assert snapshot(simulated) == before and not (simulated / BEST_DIR).exists()


def test_best_of_a_trained_search_is_not_marked_simulated(finished_experiment: Path) -> None:
    result = run_textune("best", str(finished_experiment), "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["simulated"] is None


@pytest.mark.parametrize(
    ("command", "lacks"),
    [("generate", f"checkpoint and no {BEST_DIR}/"), ("tensorboard", "TensorBoard files")],
)
def test_commands_that_need_training_refuse_a_simulated_search(
    command: str, lacks: str, simulated: Path, replayed: Path
) -> None:
    before = snapshot(simulated)
    result = run_textune(command, str(simulated))
    assert_user_error(
        result,
        f"{simulated} is a simulated search (textune replay of {replayed} with hyperopt+asha (grace 1024, rf 2); ",
        f"trained nothing, so it has no {lacks}",
        f"textune confirm {simulated} --top-k 1 --seeds 1",
    )
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert snapshot(simulated) == before


def test_replay_of_a_simulated_search_points_to_the_experiment_it_replayed(simulated: Path, replayed: Path) -> None:
    before = snapshot(simulated)
    result = run_textune("replay", str(simulated), "--seeds", "1")
    assert_user_error(
        result,
        f"{simulated} is a simulated search",
        "so it has no recorded curves of its own to replay",
        f"Replay the experiment it replayed instead: textune replay {replayed}",
    )
    assert snapshot(simulated) == before and not (simulated / "replay").exists()


def test_export_writes_the_simulated_tables(simulated: Path, tmp_path: Path) -> None:
    out = tmp_path / "out" / "sim.parquet"
    result = run_textune("export", str(simulated), "--out", str(out))
    assert result.returncode == 0, result.stderr
    trials, evaluations = pd.read_parquet(out), pd.read_parquet(out.with_suffix(".evaluations.parquet"))
    stored = pd.read_parquet(simulated / "results.parquet")
    assert list(trials["trial_id"]) == list(stored["trial_id"])
    assert list(trials["best_metric"]) == pytest.approx(list(stored["best_metric"]))
    assert len(evaluations) == len(pd.read_parquet(simulated / "evaluations.parquet"))
    assert f"{len(stored)} trials -> {out}" in result.stdout
    assert not (simulated / BEST_DIR).exists()


def test_analyze_reads_a_simulated_search(simulated: Path) -> None:
    result = run_textune("analyze", str(simulated), "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["n_trials"] == len(pd.read_parquet(simulated / "results.parquet"))


def test_report_says_the_search_was_simulated_and_samples_nothing(simulated: Path, replayed: Path) -> None:
    result = run_textune("report", str(simulated), "--top-k", "1", "--seeds", "1", "--max-new-tokens", "4")
    assert result.returncode == 0, result.stderr
    page = (simulated / "report" / "index.html").read_text()
    assert f"This is a simulated search (textune replay of {replayed} with hyperopt+asha" in page
    assert "That is one training run on one seed" not in page
    assert "A simulated search trained no model, so there is nothing to sample." in page
    # Drawn on the simulated clock, not refused as an experiment without timestamps.
    assert (simulated / "report" / "best_so_far.png").read_bytes()[:4] == b"\x89PNG"
    assert "has no timestamp column" not in page
    assert not (simulated / BEST_DIR).exists()


def test_a_damaged_simulated_table_points_to_the_replay(simulated: Path, replayed: Path) -> None:
    (simulated / "results.parquet").write_bytes(b"not parquet")
    before = snapshot(simulated)
    result = run_textune("best", str(simulated))
    assert_user_error(
        result, f"{simulated}/results.parquet", f"This is a simulated search: textune replay {replayed} writes it again"
    )
    assert "textune resume" not in result.stderr
    assert snapshot(simulated) == before
