"""The table benchmarks' command lines (benchmarks/table_args.py): bench_search_sim, bench_default_search and
bench_rank_agreement refuse a bad value or a directory that is not a readable table as argparse refuses its own
(usage, one error line, exit 2, no traceback, nothing written), and name a table's outputs so that two tables of
one run never share a name. Each case runs the module in a subprocess; none gets as far as replaying (no Ray)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.bench_search_sim import TABLES
from benchmarks.table_args import table_label
from conftest import REPO_ROOT

SEARCH_SIM, DEFAULT_SEARCH, RANK_AGREEMENT = "bench_search_sim", "bench_default_search", "bench_rank_agreement"
EVERY_BENCHMARK = (SEARCH_SIM, DEFAULT_SEARCH, RANK_AGREEMENT)
# A committed table whose manifest has the wrong type for its checksum (it used to be a TypeError traceback).
DAMAGED_MANIFEST = '{"parquet_sha256": 5}'

# (benchmark, arguments: {tmp} is the case's directory, the error line's fragments)
CASES = [
    *(
        (name, ["--table", "{tmp}/notexp"], ["--table {tmp}/notexp: {tmp}/notexp is not a learning-curve table"])
        for name in EVERY_BENCHMARK
    ),
    *(
        (
            name,
            ["--table", "{tmp}/damaged"],
            ["--table {tmp}/damaged: table manifest {tmp}/damaged/manifest.json", '"parquet_sha256" = 5 is invalid'],
        )
        for name in EVERY_BENCHMARK
    ),
    (SEARCH_SIM, ["--jobs", "0"], ["argument --jobs: must be at least 1, got 0"]),
    (SEARCH_SIM, ["--smoke", "--seeds", "0"], ["argument --seeds: must be at least 1, got 0"]),
    (SEARCH_SIM, ["--trials", "-3"], ["argument --trials: must be at least 1, got -3"]),
    (SEARCH_SIM, ["--seeds", "many"], ["argument --seeds: expected a whole number of at least 1, got 'many'"]),
    (SEARCH_SIM, ["--smoke", "--table", "{tmp}/damaged"], ["argument --table: not allowed with argument --smoke"]),
    (
        SEARCH_SIM,
        ["--table", "{tmp}/a/synthetic", "--table", "{tmp}/b/synthetic"],
        ["--table {tmp}/a/synthetic and --table {tmp}/b/synthetic would both write their results as 'synthetic'"],
    ),
    (SEARCH_SIM, ["--smoke", "--out", "{tmp}/a-file"], ["--out {tmp}/a-file: cannot be used as a directory"]),
    (DEFAULT_SEARCH, ["--jobs", "0"], ["argument --jobs: must be at least 1, got 0"]),
    (DEFAULT_SEARCH, ["--smoke", "--table", "{tmp}/damaged"], ["argument --table: not allowed with argument --smoke"]),
]


@pytest.mark.parametrize(
    ("benchmark", "arguments", "fragments"),
    CASES,
    ids=[f"{c[0]}-{'-'.join(c[1])}".replace("{tmp}/", "") for c in CASES],
)
def test_a_bad_argument_is_refused_like_argparse_refuses_its_own(
    benchmark: str, arguments: list[str], fragments: list[str], tmp_path: Path
) -> None:
    damaged = tmp_path / "damaged"
    shutil.copytree(TABLES / "synthetic", damaged)
    (damaged / "manifest.json").write_text(DAMAGED_MANIFEST)
    for twin in ("a", "b"):  # two good tables of one name
        shutil.copytree(TABLES / "synthetic", tmp_path / twin / "synthetic")
    (tmp_path / "a-file").write_text("not a directory\n")
    before = sorted(tmp_path.rglob("*"))
    out = ["--out", str(tmp_path / "out")] if benchmark != RANK_AGREEMENT and "--out" not in arguments else []
    result = subprocess.run(
        [sys.executable, "-m", f"benchmarks.{benchmark}", *(a.format(tmp=tmp_path) for a in arguments), *out],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=120,
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert result.stderr.startswith("usage:"), result.stderr
    error = result.stderr.strip().splitlines()[-1]
    assert error.startswith(f"{benchmark}.py: error: "), result.stderr
    for fragment in fragments:
        assert fragment.format(tmp=tmp_path) in error, (fragment, error)
    assert sorted(tmp_path.rglob("*")) == before  # no --out directory, no results, the table as it was


def test_outputs_are_named_by_the_table_directory_or_for_an_experiments_table_by_the_experiment(
    tmp_path: Path,
) -> None:
    assert table_label(TABLES / "synthetic") == "synthetic"
    # Every experiment's own table lies at EXPERIMENT/replay/table: named "table", two would overwrite each other.
    first, second = (tmp_path / "storage" / name / "replay" / "table" for name in ("lr-sweep", "depth-sweep"))
    assert (table_label(first), table_label(second)) == ("lr-sweep", "depth-sweep")
    assert table_label(tmp_path / "storage" / "lr-sweep" / "replay" / "table" / ".." / "table") == "lr-sweep"
    assert table_label(tmp_path / "mine" / "table") == "table"  # a table directory of that name, not an experiment's
