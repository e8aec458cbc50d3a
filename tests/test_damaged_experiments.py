"""The damaged-experiments battery: every file textune reads back from an experiment, damaged, under every
command that reads it.

Each row damages one file of a copy of the session's finished experiment (truncated, overwritten with garbage,
replaced by a table of another schema, edited, swapped for another trial's checkpoint) and runs each command
that reads that file through the real CLI. Every run must end with exit status 2 and one paragraph that names
the damaged file and says how to rebuild or replace it, without a traceback, and must leave every file of the
experiment as the damage left it. No row starts Ray: `resume` refuses a damaged Ray Tune snapshot before Ray
starts, and the other commands read Parquet, JSON and checkpoints only.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

from conftest import assert_user_error, run_textune

# A guard against a hang, not a speed limit: the first row waits for the session's finished experiment.
pytestmark = pytest.mark.timeout(600)


def truncated(path: Path) -> None:
    """The first half of the file, as a full disk or a killed copy leaves it."""
    content = path.read_bytes()
    path.write_bytes(content[: len(content) // 2])


def garbage(path: Path) -> None:
    path.write_bytes(b"\x00\xffnot what textune wrote\n" * 8)


def other_schema(path: Path) -> None:
    """A valid Parquet file of someone else's table."""
    pd.DataFrame({"name": ["a", "b"], "value": [1.5, 2.5]}).to_parquet(path)


def not_an_object(path: Path) -> None:
    path.write_text("[1, 2, 3]")


def edited_vocab_size(path: Path) -> None:
    """meta.json with another vocabulary size (it used to give a size-mismatch traceback)."""
    meta = json.loads(path.read_text())
    path.write_text(json.dumps({**meta, "vocab_size": meta["vocab_size"] + 1}, indent=2))


def another_trials_checkpoint(best: Path) -> None:
    """best/ replaced by the checkpoint of a trial that is not the best one (it used to be loaded silently)."""
    trials = pd.read_parquet(best.parent / "results.parquet")
    other = trials[trials["checkpoint"].notna()].iloc[-1]
    shutil.rmtree(best)
    shutil.copytree(best.parent / Path(other["trial_dir"]).name / Path(other["checkpoint"]).name, best)


def interrupted(experiment: Path) -> None:
    """The experiment as a run stopped before its end leaves it: no results, no best/ (so resume has work)."""
    for name in ("results.parquet", "evaluations.parquet"):
        (experiment / name).unlink()
    shutil.rmtree(experiment / "best")


def best_trials_state(experiment: Path) -> Path:
    """The weights of the best trial's own checkpoint (what report samples from)."""
    best = pd.read_parquet(experiment / "results.parquet").iloc[0]
    return experiment / Path(best["trial_dir"]).name / Path(best["checkpoint"]).name / "state.pt"


def damaged_file(experiment: Path, file: str | Callable[[Path], Path]) -> Path:
    """The file a row damages: a path in the experiment, the newest match of a glob, or a function's pick."""
    if callable(file):
        return file(experiment)
    return sorted(experiment.glob(file))[-1] if "*" in file else experiment / file


REBUILD = "textune resume {experiment}"
RAY_STATE = ("cannot be rebuilt", "--name NEW_NAME")
READ_RESULTS = (
    ("best", "{experiment}"),
    ("best", "{experiment}", "--json"),
    ("analyze", "{experiment}"),
    ("report", "{experiment}", "--out", "{tmp}/report"),
    ("generate", "{experiment}"),
)


@dataclass(frozen=True)
class Damage:
    """``file`` is a glob inside the experiment (its newest match is damaged by ``how``); ``commands`` name
    {experiment} and {tmp}; the message must name the damaged file and hold each of ``fragments``."""

    id: str
    file: str | Callable[[Path], Path]
    how: Callable[[Path], None]
    commands: tuple[tuple[str, ...], ...]
    fragments: tuple[str, ...]
    setup: Callable[[Path], None] | None = None


DAMAGES = [
    # The tables the end of a run writes, read by best, analyze, report and generate (which checks best/).
    *(
        Damage(f"results-{how.__name__}", "results.parquet", how, READ_RESULTS, (REBUILD,))
        for how in (truncated, garbage, other_schema)
    ),
    *(
        Damage(
            f"evaluations-{how.__name__}",
            "evaluations.parquet",
            how,
            (("report", "{experiment}", "--out", "{tmp}/report"),),
            (REBUILD,),
        )
        for how in (truncated, other_schema)
    ),
    # The saved spec, read by every command that works on an experiment.
    Damage(
        "spec-garbage",
        "textune-job.yaml",
        garbage,
        (
            ("best", "{experiment}"),
            ("analyze", "{experiment}"),
            ("report", "{experiment}", "--out", "{tmp}/r"),
            ("export", "{experiment}", "--out", "{tmp}/trials.parquet"),
            ("resume", "{experiment}"),
        ),
        (),
    ),
    # The best checkpoint, read by generate.
    Damage(
        "best-meta-edited",
        "best/meta.json",
        edited_vocab_size,
        (("generate", "{experiment}"),),
        ("was changed after it was written",),
    ),
    Damage("best-meta-garbage", "best/meta.json", garbage, (("generate", "{experiment}"),), ("unreadable",)),
    Damage(
        "best-state-truncated", "best/state.pt", truncated, (("generate", "{experiment}"),), ("failed its checksum",)
    ),
    Damage(
        "best-another-trials-checkpoint",
        "best",
        another_trials_checkpoint,
        (("generate", "{experiment}"),),
        ("is not the checkpoint of trial", "Give the trial's own checkpoint instead"),
    ),
    # Analyses, read by report.
    *(
        Damage(
            f"importance-{how.__name__}",
            "analysis/importance.json",
            how,
            (("report", "{experiment}", "--out", "{tmp}/report"),),
            ("rerun the command that writes it",),
        )
        for how in (garbage, not_an_object)
    ),
    # A trial's own checkpoint, read by report (its samples).
    Damage(
        "trial-checkpoint-truncated",
        best_trials_state,
        truncated,
        (("report", "{experiment}", "--out", "{tmp}/report"),),
        ("failed its checksum",),
    ),
    # Ray Tune's snapshot, read by resume (of an interrupted experiment) and export.
    *(
        Damage(
            f"ray-state-{how.__name__}",
            "experiment_state-*.json",
            how,
            (("resume", "{experiment}"), ("export", "{experiment}", "--out", "{tmp}/trials.parquet")),
            RAY_STATE,
            interrupted,
        )
        for how in (truncated, garbage)
    ),
    Damage(
        "search-generator-state-garbage",
        "search_gen_state-*.json",
        garbage,
        (("resume", "{experiment}"),),
        RAY_STATE,
        interrupted,
    ),
    Damage(
        "searcher-state-truncated",
        "searcher-state-*.pkl",
        truncated,
        (("resume", "{experiment}"),),
        RAY_STATE,
        interrupted,
    ),
    Damage("tuner-truncated", "tuner.pkl", truncated, (("resume", "{experiment}"),), RAY_STATE, interrupted),
]


def snapshot(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
        for p in sorted(root.rglob("*"))
    }


@pytest.mark.parametrize("damage", DAMAGES, ids=[d.id for d in DAMAGES])
def test_a_damaged_file_is_named_in_one_paragraph_and_nothing_changes(
    damage: Damage, experiment_copy: Path, tmp_path: Path
) -> None:
    if damage.setup is not None:
        damage.setup(experiment_copy)
    target = damaged_file(experiment_copy, damage.file)
    target.parent.mkdir(exist_ok=True)
    if not target.exists():
        target.touch()
    damage.how(target)
    before = snapshot(tmp_path)
    for command in damage.commands:
        args = [a.format(experiment=experiment_copy, tmp=tmp_path) for a in command]
        result = run_textune(*args, timeout=120)
        fragments = [str(target), *(f.format(experiment=experiment_copy) for f in damage.fragments)]
        assert_user_error(result, *fragments)
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert snapshot(tmp_path) == before, command
