"""The bad-input battery: every mistake a user can make, through the real CLI, with nothing lost.

Each row is one bad input to `textune`: a job spec, a search space, a data source, a storage path or a command
line argument. Every one must end with exit status 2 and one paragraph on stderr that names the field or file
and says how to fix it, without a traceback; and a world of real files must come out of it byte for byte as it
went in: a finished experiment (a copy of the session's), the storage root around it, and a prepared dataset
cache. No row starts Ray, and most fail before Ray Tune is even imported, so a row costs about one Python
start-up; the rows run a few at a time, each against its own copy of the world.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from conftest import REPO_ROOT, assert_user_error, run_textune

# A guard against a hang, not a speed limit: the first row waits for the session's finished experiment.
pytestmark = pytest.mark.timeout(900)

QUICKSTART = REPO_ROOT / "tune_jobs" / "configs" / "quickstart.yaml"
NAME_RULE = "no '/', '..' or absolute paths"


@dataclass(frozen=True)
class BadInput:
    """``args`` may name {quickstart}, {storage}, {experiment}, {name} (the world's) and {tmp} (the row's own
    directory, which holds ``files``); the message must contain every one of ``fragments`` (same fields)."""

    id: str
    args: tuple[str, ...]
    fragments: tuple[str, ...]
    files: dict[str, str] = field(default_factory=dict)


def run(*settings: str, extra: tuple[str, ...] = ()) -> tuple[str, ...]:
    """``textune run`` of the quickstart spec into the world's storage as a new experiment, with ``--set``s."""
    return ("run", "{quickstart}", "--set=storage={storage}", "--name", "fresh", *extra,
            *(f"--set={setting}" for setting in settings))


SPEC = "job spec {quickstart}"
BAD_INPUTS = [
    # Job specs: keys, types and cross-key checks.
    BadInput("spec-unknown-key", run("num_sample=3"),
             (SPEC, 'unknown key "num_sample"', 'Did you mean "num_samples"?')),
    BadInput("spec-wrong-type", run("num_samples=many"), (SPEC, "\"num_samples\" = 'many' is invalid")),
    BadInput("spec-derived-key-under-model", run("model.max_tokens=5"), ("max_tokens cannot be set under model:",)),
    BadInput("spec-scheduler-kind", run("scheduler.kind=hyperband"), ('"scheduler.kind"', "'asha' or 'fifo'")),
    BadInput("spec-grace-beyond-budget", run("scheduler.grace_period_tokens=900000"),
             ("scheduler.grace_period_tokens (900000) exceeds budget.max_tokens",)),
    BadInput("spec-gpu-fraction-above-one", run("resources.gpu=1.5"), ('"resources.gpu" = 1.5', "whole number")),
    BadInput("spec-yaml-syntax", ("run", "{tmp}/job.yaml"), ("{tmp}/job.yaml", "not valid YAML at line 2"),
             files={"job.yaml": "name: [unclosed\n"}),
    BadInput("spec-not-a-mapping", ("run", "{tmp}/job.yaml"), ("{tmp}/job.yaml", "must hold a mapping"),
             files={"job.yaml": "- name\n- data\n"}),
    BadInput("spec-missing-file", ("run", "{tmp}/no-such-job.yaml"), ("{tmp}/no-such-job.yaml", "does not exist")),
    # Search spaces.
    BadInput("space-inverted-range", run("space.lr.loguniform=[0.1, 0.01]"), ('"space.lr"', "empty or inverted")),
    BadInput("space-log-range-touching-0", run("space.lr.loguniform=[0, 0.01]"), ('"space.lr"', "must lie above 0")),
    BadInput("space-empty-choice", run("space.n_heads.choice=[]"), ('"space.n_heads"', "at least one value")),
    BadInput("space-grid-under-hyperopt", run("space.batch_size={{grid: [8, 16]}}"), ("hyperopt cannot search grid",)),
    BadInput("space-value-the-model-rejects", run("space.n_heads.choice=[0, 2]"),
             ('"n_heads" = 0', "model: or space:")),
    # Experiment names: one plain directory under the storage root, never a way out of it.
    *(BadInput(f"name-{label}", ("run", "{quickstart}", "--set=storage={storage}", "--name", name),
               ('"name"', NAME_RULE))
      for label, name in [("parent", "../escape"), ("absolute", "{tmp}/escape"), ("nested-parent", "a/../../b"),
                          ("dot", "."), ("empty", "")]),
    BadInput("name-in-spec", ("run", "{quickstart}", "--set=storage={storage}", "--set=name=../escape"),
             ('"name"', NAME_RULE)),
    # Storage: found before anything starts.
    BadInput("storage-under-a-file", run("storage={tmp}/a-file/runs"),
             ('storage "{tmp}/a-file/runs" is not writable', "Choose a directory"), files={"a-file": "not a dir"}),
    BadInput("storage-not-writable-even-by-root", run("storage=/proc/textune-runs"),
             ('storage "/proc/textune-runs" is not writable', "Choose a directory")),
    BadInput("storage-disk-too-full", run("storage_options.min_free_gb=1000000000"),
             ('storage "{storage}" has', "less than storage_options.min_free_gb", "lower min_free_gb")),
    BadInput("storage-unknown-scheme", run("storage=ftp://host/runs"), ('unknown scheme "ftp://"', "s3://BUCKET")),
    # Data sources named in the job spec.
    BadInput("data-missing-file", run("data.source={tmp}/nowhere.txt"),
             ('data source "{tmp}/nowhere.txt" does not exist',)),
    BadInput("data-empty-corpus", run("data.source={tmp}/empty.txt"), ('"{tmp}/empty.txt" holds no text',),
             files={"empty.txt": ""}),
    BadInput("data-glob-matching-nothing", run("data.source={tmp}/*.md"), ('"{tmp}/*.md" matches no files',)),
    BadInput("data-unknown-builtin", run("data.source=shakespear"), ('"shakespear"', 'Did you mean "shakespeare"?')),
    BadInput("data-unknown-tokenizer", run("data.tokenizer.kind=wordpiece"), ('"data.tokenizer.kind"', "'bpe'")),
    # Command-line arguments.
    BadInput("cli-set-without-value", run(extra=("--set", "num_samples")), ('--set "num_samples" is not of the form',)),
    BadInput("cli-set-into-a-value", run("num_samples.max=3"), ('"num_samples" holds a value, not a section',)),
    BadInput("cli-address-malformed", run(extra=("--address", "head-node")),
             ('--address "head-node" is not HOST:PORT',)),
    BadInput("cli-address-dashboard-url", ("resume", "{experiment}", "--address", "http://127.0.0.1:8265"),
             ("is a dashboard (Jobs API) URL", "textune submit")),
    BadInput("cli-run-over-an-existing-experiment",
             ("run", "{quickstart}", "--set=storage={storage}", "--name", "{name}"),
             ("experiment {experiment} already exists", "textune resume {experiment}")),
    BadInput("cli-resume-missing-experiment", ("resume", "{storage}/no-such-experiment"),
             ("{storage}/no-such-experiment is not a textune experiment",)),
    BadInput("cli-export-over-results", ("export", "{experiment}", "--out", "{experiment}/results.parquet"),
             ("{experiment}/results.parquet already exists", "--force")),
    BadInput("cli-generate-on-a-non-checkpoint", ("generate", "{tmp}/notes.txt"),
             ("{tmp}/notes.txt is neither a checkpoint",), files={"notes.txt": "some notes\n"}),
    BadInput("cli-tensorboard-port", ("tensorboard", "{experiment}", "--port", "70000"),
             ("'--port'", "70000", "textune tensorboard --help")),
    BadInput("cli-unknown-option", ("run", "{quickstart}", "--sett", "num_samples=2"),
             ("No such option '--sett'", "Did you mean '--set'?")),
    BadInput("cli-unknown-command", ("rnu", "{quickstart}"), ('no command "rnu"', 'Did you mean "run"?')),
]


def snapshot(root: Path) -> dict[str, str]:
    """Every file's SHA-256, every directory and link under ``root``, by relative path."""
    state = {}
    for path in sorted(root.rglob("*")):
        relative = str(path.relative_to(root))
        if path.is_symlink():
            state[relative] = f"link to {path.readlink()}"
        elif path.is_dir():
            state[relative] = "directory"
        else:
            state[relative] = hashlib.sha256(path.read_bytes()).hexdigest()
    return state


@dataclass(frozen=True)
class Outcome:
    """One row run: the CLI's result, the row's world before and after it, and what its arguments named."""

    result: subprocess.CompletedProcess[str]
    world_before: dict[str, str]
    world_after: dict[str, str]
    inputs_after: dict[str, str]
    fill: dict[str, Path]


@pytest.fixture(scope="module")
def outcomes(finished_experiment: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Outcome]:
    """Every row, each against its own copy of the world, a few at a time (each row is mostly Python start-up).

    The world: the session's finished experiment in a storage root, and a dataset cache holding a prepared
    dataset. Every row runs with that cache as its ``TEXTUNE_CACHE_DIR``.
    """
    template = tmp_path_factory.mktemp("battery-world")
    shutil.copytree(finished_experiment, template / "storage" / finished_experiment.name, symlinks=True)
    prepared = run_textune("data", "prepare", "synthetic", "--characters", "20000",
                           env={"TEXTUNE_CACHE_DIR": str(template / "cache")})
    assert prepared.returncode == 0, prepared.stderr

    def prepare(case: BadInput) -> tuple[Path, dict[str, Path]]:
        root = tmp_path_factory.mktemp(case.id)
        world, inputs = root / "world", root / "inputs"
        shutil.copytree(template, world, symlinks=True)
        inputs.mkdir()
        for name, content in case.files.items():
            (inputs / name).write_text(content, encoding="utf-8")
        storage = world / "storage"
        return world, {"quickstart": QUICKSTART, "storage": storage, "experiment": storage / finished_experiment.name,
                       "name": Path(finished_experiment.name), "tmp": inputs}

    def attempt(case: BadInput, world: Path, fill: dict[str, Path]) -> Outcome:
        before = snapshot(world)
        result = run_textune(*(arg.format(**fill) for arg in case.args),
                             env={"TEXTUNE_CACHE_DIR": str(world / "cache")}, timeout=300)
        return Outcome(result, before, snapshot(world), snapshot(fill["tmp"]), fill)

    prepared_rows = [prepare(case) for case in BAD_INPUTS]
    with ThreadPoolExecutor(max_workers=4) as pool:
        runs = [pool.submit(attempt, case, *row) for case, row in zip(BAD_INPUTS, prepared_rows)]
        return {case.id: run.result() for case, run in zip(BAD_INPUTS, runs)}


def test_the_battery_is_broad() -> None:
    assert len(BAD_INPUTS) >= 25
    assert len({case.id for case in BAD_INPUTS}) == len(BAD_INPUTS)
    assert {case.id.split("-")[0] for case in BAD_INPUTS} == {"spec", "space", "name", "storage", "data", "cli"}


@pytest.mark.parametrize("case", BAD_INPUTS, ids=[case.id for case in BAD_INPUTS])
def test_bad_input_gets_one_paragraph_and_exit_2_and_changes_nothing(case: BadInput,
                                                                     outcomes: dict[str, Outcome]) -> None:
    outcome = outcomes[case.id]
    assert_user_error(outcome.result, *(fragment.format(**outcome.fill) for fragment in case.fragments))
    assert len(outcome.result.stderr.strip().splitlines()) == 1, outcome.result.stderr
    assert outcome.world_after == outcome.world_before
    assert outcome.inputs_after == {name: hashlib.sha256(content.encode()).hexdigest()
                                    for name, content in case.files.items()}
