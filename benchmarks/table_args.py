"""Command-line arguments the table benchmarks share (bench_search_sim, bench_default_search, bench_rank_agreement).

Counts of at least one, ``--table`` directories read as learning-curve tables (tune_jobs.replay.table), and the
label a table's outputs carry, which two tables of one run never share. A bad value is refused the way argparse
refuses its own: the usage line, one paragraph naming the option and the fix, exit status 2, no traceback.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any


def at_least_one(text: str) -> int:
    """argparse ``type`` of a count (``--seeds``, ``--trials``, ``--jobs``): a whole number >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def add_jobs_option(parser: argparse.ArgumentParser) -> None:
    """``--jobs N``: the processes that replay searches, one per core this process may use by default."""
    parser.add_argument(
        "--jobs",
        type=at_least_one,
        default=len(os.sched_getaffinity(0)),
        help="Processes that replay searches (default: one per core).",
    )


def table_label(directory: Path) -> str:
    """The name a table's outputs carry: its directory's name (``benchmarks/tables/synthetic``: ``synthetic``), or
    for an experiment's own table (``EXPERIMENT/replay/table``, written by ``textune replay``) the experiment's."""
    from tune_jobs.replay.experiment_replay import REPLAY_DIR, TABLE_DIR

    resolved = directory.resolve()
    if resolved.name == TABLE_DIR and resolved.parent.name == REPLAY_DIR:
        return resolved.parent.parent.name
    return resolved.name


def read_tables(parser: argparse.ArgumentParser, directories: list[Path]) -> list[tuple[str, Any]]:
    """``(label, CurveTable)`` per ``--table`` directory, in order.

    Ends through ``parser.error`` (exit 2) with the TextuneError's paragraph for a directory that is not a
    readable table, and for two directories whose outputs would carry one label (one would overwrite the other).
    """
    from textune.errors import TextuneError
    from tune_jobs.replay.table import load_table

    seen: dict[str, Path] = {}
    for directory in directories:
        label = table_label(directory)
        if label in seen:
            parser.error(
                f"--table {seen[label]} and --table {directory} would both write their results as {label!r}, "
                "so one would overwrite the other. Give them in separate runs, each with its own --out."
            )
        seen[label] = directory
    tables = []
    for label, directory in seen.items():
        try:
            tables.append((label, load_table(directory)))
        except TextuneError as error:
            parser.error(f"--table {directory}: {error.paragraph()}")
    return tables


def output_directory(parser: argparse.ArgumentParser, path: Path) -> Path:
    """``path`` created if need be; ``parser.error`` when it cannot be (a file there, no permission)."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        parser.error(f"--out {path}: cannot be used as a directory ({error.strerror}). Give a directory.")
    return path
