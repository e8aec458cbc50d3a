"""`textune replay` on the session's finished experiment, through the real CLI: what it writes (only
EXPERIMENT/replay/), that `textune best` reads a simulated search, and its bad inputs (exit 2, one paragraph,
nothing changed). The replays start no Ray; the finished_experiment fixture does, once per session."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest

from conftest import assert_user_error, run_textune

pytestmark = pytest.mark.timeout(600)


def snapshot(root: Path, skip: str | None = None) -> dict[str, str]:
    """Every file's SHA-256 under ``root`` by relative path, leaving out the tree ``skip``."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not (skip and p.relative_to(root).parts[0] == skip)
    }


def test_replay_writes_its_comparison_only_into_replay(experiment_copy: Path) -> None:
    before = snapshot(experiment_copy)
    result = run_textune("replay", str(experiment_copy), "--seeds", "4")
    assert result.returncode == 0, result.stderr
    assert snapshot(experiment_copy, skip="replay") == before
    replay = experiment_copy / "replay"
    document = json.loads((replay / "replay.json").read_text())
    trials = pd.read_parquet(experiment_copy / "results.parquet")
    assert document["target"] == pytest.approx(trials["best_metric"].min())
    assert document["workers"] == 2 and document["seeds"] == 4 and document["trials"] == len(trials)
    labels = [s["strategy"] for s in document["strategies"]]
    assert labels == [
        "random+fifo",
        "random+asha (grace 1024, rf 2)",
        "hyperopt+fifo",
        "hyperopt+asha (grace 1024, rf 2)",
    ]  # the recorded values cross to more grid points than trials
    for summary in document["strategies"]:
        assert summary["regret"]["iqm"] >= 0 and summary["regret"]["low"] <= summary["regret"]["iqm"]
        assert 0.0 <= summary["extrapolated_share"] <= 1.0
        assert 0.0 <= summary["within_0.01"]["reached_share"] <= 1.0
    assert document["fill_error"]["scheme"] == "leave-one-configuration-out"
    assert (replay / "replay.png").read_bytes()[:4] == b"\x89PNG"
    assert (replay / "table" / "manifest.json").is_file() and (replay / "table" / "curves.parquet").is_file()
    for line in ("random+asha (grace 1024, rf 2)", "tokens to best±1%", f"written: {replay}"):
        assert line in result.stdout
    # Random search over a continuous learning rate never meets a recorded configuration: it says so.
    assert result.stderr.startswith("warning: ") and "were not recorded" in result.stderr

    # A simulated search is an experiment directory the read-only commands take.
    simulated = replay / "searches" / "hyperopt-asha-g1024-rf2"
    best = run_textune("best", str(simulated), "--json")
    assert best.returncode == 0, best.stderr
    assert json.loads(best.stdout)["trial_id"].startswith("sim_")
    analyzed = run_textune("analyze", str(simulated), "--json")
    assert analyzed.returncode == 0, analyzed.stderr
    assert json.loads(analyzed.stdout)["n_trials"] == len(trials)


def test_report_shows_the_replay_once_replay_has_run(experiment_copy: Path) -> None:
    quick = ("--top-k", "1", "--seeds", "1", "--max-new-tokens", "4")
    before = run_textune("report", str(experiment_copy), *quick)
    assert before.returncode == 0, before.stderr
    assert 'id="replay"' not in (experiment_copy / "report" / "index.html").read_text()

    replayed = run_textune(
        "replay",
        str(experiment_copy),
        "--seeds",
        "3",
        "--strategy",
        "random+asha",
        "--strategy",
        "hyperopt+asha",
        "--json",
    )
    assert replayed.returncode == 0, replayed.stderr
    document = json.loads(replayed.stdout)
    after = run_textune("report", str(experiment_copy), *quick)
    assert after.returncode == 0, after.stderr
    page = (experiment_copy / "report" / "index.html").read_text()
    replay = page[page.index('<section id="replay">') :]
    replay = replay[: replay.index("</section>")]
    for summary in document["strategies"]:  # each strategy's row: regret IQM and its extrapolated share
        assert f"<td>{summary['strategy']}</td><td>{summary['regret']['iqm']:.4f} [" in replay
        assert f"<td>{100 * summary['extrapolated_share']:.0f}%</td></tr>" in replay
    assert f"{document['target']:.4f}, the experiment's best" in replay
    assert "were not recorded" in replay  # the extrapolation warning travels with the numbers
    assert 'alt="anytime regret of the replayed strategies"' in replay
    plot = (experiment_copy / "report" / "replay.png").read_bytes()
    assert plot == (experiment_copy / "replay" / "replay.png").read_bytes()


@pytest.mark.parametrize("content", ["{not json", "[1, 2]"], ids=["not-json", "no-strategies"])
def test_report_refuses_a_damaged_replay_document(content: str, experiment_copy: Path) -> None:
    (experiment_copy / "replay").mkdir()
    (experiment_copy / "replay" / "replay.json").write_text(content)
    before = snapshot(experiment_copy)
    result = run_textune("report", str(experiment_copy), "--top-k", "1", "--seeds", "1", "--max-new-tokens", "4")
    assert_user_error(
        result, f"{experiment_copy}/replay/replay.json is not a textune replay document", "run textune replay again"
    )
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert snapshot(experiment_copy) == before


def test_replay_times_evaluations_by_flops_at_a_stated_throughput(experiment_copy: Path) -> None:
    def device_hours(throughput: float) -> tuple[float, dict]:
        result = run_textune(
            "replay",
            str(experiment_copy),
            "--strategy",
            "random+fifo",
            "--workers",
            "1",
            "--seeds",
            "1",
            "--fill",
            "nearest",
            "--throughput",
            f"{throughput:g}",
            "--json",
        )
        assert result.returncode == 0, result.stderr
        document = json.loads(result.stdout)
        return document["strategies"][0]["device_hours"]["iqm"], document

    slow, document = device_hours(1e8)
    fast, _ = device_hours(2e8)
    assert document["throughput_flops_per_s"] == 1e8
    # One worker, FIFO: the same trials either way; only the evaluations' time (FLOPs / throughput) halves, the
    # slot's start and each trial's start overhead stay.
    overhead_hours = (
        document["overhead"]["slot_start_s"] + document["trials"] * document["overhead"]["trial_start_s"]
    ) / 3600
    assert slow - overhead_hours == pytest.approx(2 * (slow - fast))
    assert slow - fast > 0


def test_replay_asha_settings_and_workers_from_the_command_line(experiment_copy: Path) -> None:
    result = run_textune(
        "replay",
        str(experiment_copy),
        "--strategy",
        "hyperopt+asha",
        "--strategy",
        "random+fifo",
        "--grace-period-tokens",
        "1024",
        "--grace-period-tokens",
        "2048",
        "--reduction-factor",
        "3",
        "--workers",
        "4",
        "--seeds",
        "3",
        "--trials",
        "6",
        "--fill",
        "nearest",
        "--json",
    )
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert [s["strategy"] for s in document["strategies"]] == [
        "hyperopt+asha (grace 1024, rf 3)",
        "hyperopt+asha (grace 2048, rf 3)",
        "random+fifo",
    ]
    assert document["workers"] == 4 and document["trials"] == 6 and document["fill"] == "nearest"


def _keep_one_trial(experiment: Path) -> None:
    trials = pd.read_parquet(experiment / "results.parquet")
    evaluations = pd.read_parquet(experiment / "evaluations.parquet")
    keep = trials["trial_id"].iloc[0]
    trials[trials["trial_id"] == keep].to_parquet(experiment / "results.parquet")
    evaluations[evaluations["trial_id"] == keep].to_parquet(experiment / "evaluations.parquet")


def _no_evaluations(experiment: Path) -> None:
    pd.DataFrame().to_parquet(experiment / "evaluations.parquet")


def _tampered_table(experiment: Path) -> None:
    assert run_textune("replay", str(experiment), "--seeds", "1", "--strategy", "random+fifo").returncode == 0
    curves = experiment / "replay" / "table" / "curves.parquet"
    data = bytearray(curves.read_bytes())
    data[len(data) // 2] ^= 0xFF
    curves.write_bytes(bytes(data))


BAD_REPLAYS: list[tuple[str, Callable[[Path], None] | None, tuple[str, ...], tuple[str, ...]]] = [
    ("no-evaluations", _no_evaluations, (), ("has no evaluations", "textune resume")),
    ("single-trial", _keep_one_trial, (), ("has 1 trial with evaluations", "needs at least 2")),
    (
        "unknown-strategy",
        None,
        ("--strategy", "hyperopt+hyperband"),
        ('--strategy "hyperopt+hyperband" is not a strategy', 'Did you mean "hyperopt+asha"?'),
    ),
    ("workers-zero", None, ("--workers", "0"), ('"workers" = 0 is invalid', "greater than 0")),
    (
        "grace-beyond-budget",
        None,
        ("--grace-period-tokens", "100000"),
        (
            "replayed strategy random+asha (grace 100000, rf 2)",
            "grace_period_tokens (100000) exceeds budget.max_tokens",
        ),
    ),
    (
        "too-many-rungs",
        None,
        ("--strategy", "hyperopt+asha", "--reduction-factor", "1.01"),
        ("replayed strategy hyperopt+asha (grace 1024, rf 1.01)", "at most 20 are allowed"),
    ),
    ("table-checksum", _tampered_table, (), ("curves.parquet fails its checksum", "Rebuild the table")),
    ("throughput-zero", None, ("--throughput", "0"), ('"throughput_flops_per_s" = 0.0 is invalid', "greater than 0")),
]


@pytest.mark.parametrize("case", BAD_REPLAYS, ids=[case[0] for case in BAD_REPLAYS])
def test_bad_replays_get_one_paragraph_and_change_nothing(case, experiment_copy: Path) -> None:
    _, damage, args, fragments = case
    if damage is not None:
        damage(experiment_copy)
    before = snapshot(experiment_copy)
    result = run_textune("replay", str(experiment_copy), *args)
    assert_user_error(result, *fragments)
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert snapshot(experiment_copy) == before
