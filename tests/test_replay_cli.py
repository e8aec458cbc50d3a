"""`textune replay` on the session's finished experiment, through the real CLI: what it writes (only
EXPERIMENT/replay/), that `textune best` reads a simulated search, and its bad inputs (exit 2, one paragraph,
nothing changed). The replays start no Ray; the finished_experiment fixture does, once per session."""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest

from conftest import assert_user_error, run_textune
from textune.signals import deferred_signals
from tune_jobs.experiment import open_experiment
from tune_jobs.lifecycle import held_experiment

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
    ("workers-zero", None, ("--workers", "0"), ("--workers 0 is invalid", "expected a number > 0")),
    (
        "grace-beyond-budget",
        None,
        ("--grace-period-tokens", "100000"),
        (
            "replayed strategy random+asha (grace 100000, rf 2)",
            "--grace-period-tokens 100000 exceeds the recorded budget.max_tokens",
        ),
    ),
    (
        "too-many-rungs",
        None,
        ("--strategy", "hyperopt+asha", "--reduction-factor", "1.01"),
        ("replayed strategy hyperopt+asha (grace 1024, rf 1.01)", "at most 20 are allowed"),
    ),
    ("table-checksum", _tampered_table, (), ("curves.parquet fails its checksum", "Rebuild the table")),
    ("throughput-zero", None, ("--throughput", "0"), ("--throughput 0.0 is invalid", "expected a number > 0")),
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


# Slice M: replay/ holds one replay, whole; never written from a live run.
REPLAYED_FILES = {"table", "replay.json", "replay.png", "searches"}
QUICK = ("--seeds", "1", "--fill", "nearest")


def _searches(replay: Path) -> set[str]:
    return {p.name for p in (replay / "searches").iterdir()}


def _slugs(replay: Path) -> set[str]:
    """The searches replay.json describes, as their folder names (random+asha (grace 1024, rf 2) -> random-asha-...)."""
    document = json.loads((replay / "replay.json").read_text())
    slugs = set()
    for summary in document["strategies"]:
        name, _, asha = summary["strategy"].partition(" (grace ")
        grace, _, factor = asha.rstrip(")").partition(", rf ")
        slugs.add(name.replace("+", "-") + (f"-g{grace}-rf{factor}" if asha else ""))
    return slugs


def test_replay_replaces_the_previous_replay_whole(experiment_copy: Path) -> None:
    replay = experiment_copy / "replay"
    first = run_textune("replay", str(experiment_copy), *QUICK, "--strategy", "random+asha", "--strategy", "grid+asha")
    assert first.returncode == 0, first.stderr
    assert _searches(replay) == _slugs(replay) == {"random-asha-g1024-rf2", "grid-asha-g1024-rf2"}
    # A user's folder inside an old search, and what a replay killed mid-way leaves behind.
    (replay / "searches" / "random-asha-g1024-rf2" / "analysis").mkdir()
    (replay / "searches" / "random-asha-g1024-rf2" / "analysis" / "importance.json").write_text("{}")
    (replay / ".staging-dead" / "searches").mkdir(parents=True)
    (replay / ".previous-dead").mkdir()
    (replay / ".keep").write_text("a user's hidden file stays")
    outside = snapshot(experiment_copy, skip="replay")

    for args, slugs in (
        (
            ("--strategy", "random+asha", "--grace-period-tokens", "2048", "--reduction-factor", "3"),
            {"random-asha-g2048-rf3"},
        ),
        (("--strategy", "hyperopt+fifo"), {"hyperopt-fifo"}),
    ):
        result = run_textune("replay", str(experiment_copy), *QUICK, *args)
        assert result.returncode == 0, result.stderr
        assert {p.name for p in replay.iterdir()} == REPLAYED_FILES | {".keep"}
        assert _searches(replay) == _slugs(replay) == slugs
        assert snapshot(experiment_copy, skip="replay") == outside
    # The simulated search names where it lives now, not the staging directory it was written in.
    assert (
        f"storage: {replay / 'searches'}\n" in (replay / "searches" / "hyperopt-fifo" / "textune-job.yaml").read_text()
    )
    assert f"written: {replay}" in result.stdout and "interrupted" not in result.stderr


def test_replay_refuses_to_replace_a_trained_search_inside_it(experiment_copy: Path) -> None:
    assert run_textune("replay", str(experiment_copy), *QUICK, "--strategy", "random+fifo").returncode == 0
    confirm = experiment_copy / "replay" / "searches" / "random-fifo" / "confirm"
    confirm.mkdir()
    (confirm / "textune-job.yaml").write_text("name: confirm\n")
    before = snapshot(experiment_copy)
    result = run_textune("replay", str(experiment_copy), *QUICK, "--strategy", "hyperopt+fifo")
    assert_user_error(result, f"{confirm} holds a trained search", f"Move it out of {experiment_copy}/replay first")
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert snapshot(experiment_copy) == before


@pytest.fixture
def live(experiment_copy: Path):
    """The experiment with its lock held, as the driver of a live `textune run` or `resume` holds it."""
    with held_experiment(open_experiment(experiment_copy)):
        yield experiment_copy


LIVE_COMMANDS = [
    (("replay", "--seeds", "1"), "Replay it when the run has ended"),
    (("best",), "Ask for its best trial when the run has ended"),
    (("analyze",), "Analyze it when the run has ended"),
    (("report", "--top-k", "1", "--seeds", "1"), "Report on it when the run has ended"),
    (("confirm", "--top-k", "1", "--seeds", "1"), "Confirm its winners when the run has ended"),
]


@pytest.mark.parametrize("first_run", [False, True], ids=["resumed", "first-run"])
def test_read_commands_refuse_a_live_experiment(first_run: bool, live: Path) -> None:
    if first_run:  # a first run still going has no results.parquet: it must not be sent to `textune resume`
        (live / "results.parquet").unlink()
    before = snapshot(live)
    for (command, *args), hint in LIVE_COMMANDS:
        result = run_textune(command, str(live), *args)
        assert_user_error(result, f"{live} is being run right now", f"holds {live}/.textune-lock", hint)
        assert "textune resume" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
        assert snapshot(live) == before, command


def test_export_of_a_live_experiment_says_it_is_still_running(live: Path, tmp_path: Path) -> None:
    result = run_textune("export", str(live), "--out", str(tmp_path / "trials.parquet"))
    assert result.returncode == 0, result.stderr
    assert result.stderr.startswith(f"warning: {live} is being run right now") and "export again" in result.stderr


def test_ctrl_c_leaves_the_previous_replay_or_the_new_one_whole(experiment_copy: Path) -> None:
    """SIGINT at random moments of real replays: replay/ is always the previous replay byte for byte (exit 130,
    "aborted.") or the new one complete (what was printed says so); never a mix."""
    replay = experiment_copy / "replay"
    assert run_textune("replay", str(experiment_copy), *QUICK, "--strategy", "random+fifo").returncode == 0
    started = time.monotonic()
    full = run_textune("replay", str(experiment_copy), *QUICK, "--strategy", "hyperopt+fifo")
    duration = time.monotonic() - started
    assert full.returncode == 0, full.stderr
    random_ = random.Random(0)
    outcomes = set()
    for attempt, strategy in enumerate(["random+fifo", "hyperopt+fifo"] * 3):
        before = snapshot(replay)
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tune_jobs.cli.main",
                "replay",
                str(experiment_copy),
                *QUICK,
                "--strategy",
                strategy,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        # From the middle of a run (the first: surely before its writes) to a little past its end: the write phase
        # is its last part.
        time.sleep(duration * (random_.uniform(0.5, 1.1) if attempt else 0.5))
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=120)
        visible = {name: digest for name, digest in snapshot(replay).items() if not name.startswith(".")}
        if visible == {k: v for k, v in before.items() if not k.startswith(".")} and "written:" not in stdout:
            outcomes.add("previous")
            assert process.returncode != 0, stderr  # 130 "aborted.", or killed before Python's handler existed
        else:
            outcomes.add("new")
            assert _searches(replay) == _slugs(replay) == {strategy.replace("+", "-")}, (stdout, stderr)
            assert {p.name for p in replay.iterdir() if not p.name.startswith(".")} == REPLAYED_FILES
            assert f"written: {replay}" in stdout, stderr
            assert "aborted." not in stderr, stderr  # never after "written:"
            if process.returncode == 130:  # the signal waited for the swap and the printout, and says so
                assert "interrupted after the new replay was in place" in stderr, stderr
            else:  # done: a signal while Python shuts down after the printout is ignored
                assert process.returncode == 0, stderr
    assert "previous" in outcomes  # the loop did interrupt replays before their end
    # A later replay removes whatever a killed one left behind.
    assert run_textune("replay", str(experiment_copy), *QUICK, "--strategy", "random+fifo").returncode == 0
    assert {p.name for p in replay.iterdir()} == REPLAYED_FILES


def test_signals_wait_for_the_swap_then_act() -> None:
    """The swap's guard (textune.signals): Ctrl-C and SIGTERM inside the block are recorded, not acted on;
    after it, delivered (Ctrl-C: KeyboardInterrupt) or left to the caller; the handlers come back."""
    # Python's own Ctrl-C handler, whatever an earlier test in this process (Ray's in-process start) left there.
    outside = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        _signals_wait_for_the_swap_then_act()
    finally:
        signal.signal(signal.SIGINT, outside)


def _signals_wait_for_the_swap_then_act() -> None:
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    with deferred_signals(deliver=False) as received:
        os.kill(os.getpid(), signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.01)
    assert received == [signal.SIGTERM, signal.SIGINT]
    with pytest.raises(KeyboardInterrupt), deferred_signals():
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.01)
        finished = True  # the block ran to its end before the interrupt
    assert finished
    assert {sig: signal.getsignal(sig) for sig in handlers} == handlers
