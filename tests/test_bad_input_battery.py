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

from conftest import assert_user_error, run_textune
from support.files import snapshot
from support.jobs import ALIAS_BOMB, QUICKSTART
from textune.config import MAX_YAML_DEPTH

# A guard against a hang, not a speed limit: the first row waits for the session's finished experiment.
pytestmark = pytest.mark.timeout(900)

NAME_RULE = "no '/', '..' or absolute paths"


@dataclass(frozen=True)
class BadInput:
    """``args`` may name {quickstart}, {storage}, {experiment}, {name} (the world's) and {tmp} (the row's own
    directory, which holds ``files``); the message must contain every one of ``fragments`` (same fields).
    ``experiment_files`` are written into the row's copy of the experiment (paths relative to it) before the world
    is snapshotted: a damaged file of it, which must come out unchanged too."""

    id: str
    args: tuple[str, ...]
    fragments: tuple[str, ...]
    files: dict[str, str] = field(default_factory=dict)
    experiment_files: dict[str, str] = field(default_factory=dict)


def run(*settings: str, extra: tuple[str, ...] = ()) -> tuple[str, ...]:
    """``textune run`` of the quickstart spec into the world's storage as a new experiment, with ``--set``s."""
    return (
        "run",
        "{quickstart}",
        "--set=storage={storage}",
        "--name",
        "fresh",
        *extra,
        *(f"--set={setting}" for setting in settings),
    )


SPEC = "job spec {quickstart}"
BAD_INPUTS = [
    # Job specs: keys, types and cross-key checks.
    BadInput(
        "spec-unknown-key", run("num_sample=3"), (SPEC, 'unknown key "num_sample"', 'Did you mean "num_samples"?')
    ),
    BadInput("spec-wrong-type", run("num_samples=many"), (SPEC, "\"num_samples\" = 'many' is invalid")),
    BadInput("spec-derived-key-under-model", run("model.max_tokens=5"), ("max_tokens cannot be set under model:",)),
    BadInput(
        "spec-scheduler-kind", run("scheduler.kind=hyperband"), ('"scheduler.kind"', "expected one of asha, fifo")
    ),
    BadInput(
        "spec-grace-beyond-budget",
        run("scheduler.grace_period_tokens=900000"),
        ("scheduler.grace_period_tokens (900000) exceeds budget.max_tokens",),
    ),
    BadInput("spec-gpu-fraction-above-one", run("resources.gpu=1.5"), ('"resources.gpu" = 1.5', "whole number")),
    BadInput(
        "spec-yaml-syntax",
        ("run", "{tmp}/job.yaml"),
        ("{tmp}/job.yaml", "not valid YAML at line 2"),
        files={"job.yaml": "name: [unclosed\n"},
    ),
    BadInput(
        "spec-not-a-mapping",
        ("run", "{tmp}/job.yaml"),
        ("{tmp}/job.yaml", "must hold a mapping"),
        files={"job.yaml": "- name\n- data\n"},
    ),
    BadInput("spec-missing-file", ("run", "{tmp}/no-such-job.yaml"), ("{tmp}/no-such-job.yaml", "does not exist")),
    # Search spaces.
    BadInput("space-inverted-range", run("space.lr.loguniform=[0.1, 0.01]"), ('"space.lr"', "empty or inverted")),
    BadInput("space-log-range-touching-0", run("space.lr.loguniform=[0, 0.01]"), ('"space.lr"', "must lie above 0")),
    BadInput("space-empty-choice", run("space.n_heads.choice=[]"), ('"space.n_heads"', "at least one value")),
    BadInput("space-grid-under-hyperopt", run("space.batch_size={{grid: [8, 16]}}"), ("hyperopt cannot search grid",)),
    BadInput(
        "space-value-the-model-rejects", run("space.n_heads.choice=[0, 2]"), ('"n_heads" = 0', "model: or space:")
    ),
    # Experiment names: one plain directory under the storage root, never a way out of it.
    *(
        BadInput(
            f"name-{label}", ("run", "{quickstart}", "--set=storage={storage}", "--name", name), ('"name"', NAME_RULE)
        )
        for label, name in [
            ("parent", "../escape"),
            ("absolute", "{tmp}/escape"),
            ("nested-parent", "a/../../b"),
            ("dot", "."),
            ("empty", ""),
        ]
    ),
    BadInput(
        "name-in-spec",
        ("run", "{quickstart}", "--set=storage={storage}", "--set=name=../escape"),
        ('"name"', NAME_RULE),
    ),
    # Storage: found before anything starts.
    BadInput(
        "storage-under-a-file",
        run("storage={tmp}/a-file/runs"),
        ('storage "{tmp}/a-file/runs" is not writable', "Choose a directory"),
        files={"a-file": "not a dir"},
    ),
    BadInput(
        "storage-not-writable-even-by-root",
        run("storage=/proc/textune-runs"),
        ('storage "/proc/textune-runs" is not writable', "Choose a directory"),
    ),
    BadInput(
        "storage-disk-too-full",
        run("storage_options.min_free_gb=1000000000"),
        ('storage "{storage}" has', "less than storage_options.min_free_gb", "lower min_free_gb"),
    ),
    BadInput("storage-unknown-scheme", run("storage=ftp://host/runs"), ('unknown scheme "ftp://"', "s3://BUCKET")),
    # Data sources named in the job spec.
    BadInput(
        "data-missing-file", run("data.source={tmp}/nowhere.txt"), ('data source "{tmp}/nowhere.txt" does not exist',)
    ),
    BadInput(
        "data-empty-corpus",
        run("data.source={tmp}/empty.txt"),
        ('"{tmp}/empty.txt" holds no text',),
        files={"empty.txt": ""},
    ),
    BadInput("data-glob-matching-nothing", run("data.source={tmp}/*.md"), ('"{tmp}/*.md" matches no files',)),
    BadInput("data-unknown-builtin", run("data.source=shakespear"), ('"shakespear"', 'Did you mean "shakespeare"?')),
    BadInput(
        "data-unknown-tokenizer",
        run("data.tokenizer.kind=wordpiece"),
        ('"data.tokenizer.kind"', "expected one of char, byte, bpe, pretrained"),
    ),
    # Command-line arguments.
    BadInput("cli-set-without-value", run(extra=("--set", "num_samples")), ('--set "num_samples" is not of the form',)),
    BadInput("cli-set-into-a-value", run("num_samples.max=3"), ('"num_samples" holds a value, not a section',)),
    BadInput(
        "cli-address-malformed", run(extra=("--address", "head-node")), ('--address "head-node" is not HOST:PORT',)
    ),
    BadInput(
        "cli-address-dashboard-url",
        ("resume", "{experiment}", "--address", "http://127.0.0.1:8265"),
        ("is a dashboard (Jobs API) URL", "textune submit"),
    ),
    BadInput(
        "cli-run-over-an-existing-experiment",
        ("run", "{quickstart}", "--set=storage={storage}", "--name", "{name}"),
        ("experiment {experiment} already exists", "textune resume {experiment}"),
    ),
    BadInput(
        "cli-resume-missing-experiment",
        ("resume", "{storage}/no-such-experiment"),
        ("{storage}/no-such-experiment is not a textune experiment",),
    ),
    BadInput(
        "cli-export-over-results",
        ("export", "{experiment}", "--out", "{experiment}/results.parquet"),
        ("{experiment}/results.parquet already exists", "--force"),
    ),
    BadInput(
        "cli-generate-on-a-non-checkpoint",
        ("generate", "{tmp}/notes.txt"),
        ("{tmp}/notes.txt is neither a checkpoint",),
        files={"notes.txt": "some notes\n"},
    ),
    BadInput(
        "cli-tensorboard-port",
        ("tensorboard", "{experiment}", "--port", "70000"),
        ("'--port'", "70000", "textune tensorboard --help"),
    ),
    BadInput(
        "cli-unknown-option",
        ("run", "{quickstart}", "--sett", "num_samples=2"),
        ("No such option '--sett'", "Did you mean '--set'?"),
    ),
    BadInput("cli-unknown-command", ("rnu", "{quickstart}"), ('no command "rnu"', 'Did you mean "run"?')),
    # S8 (textune replay): more replay bad inputs, on damaged experiments, are in tests/test_replay_cli.py.
    BadInput(
        "cli-replay-unknown-strategy",
        ("replay", "{experiment}", "--strategy", "hyperopt+hyperband"),
        ('--strategy "hyperopt+hyperband" is not a strategy', 'Did you mean "hyperopt+asha"?'),
    ),
    BadInput("cli-replay-no-workers", ("replay", "{experiment}", "--workers", "0"), ("--workers 0 is invalid",)),
    BadInput(
        "cli-replay-not-an-experiment",
        ("replay", "{storage}/no-such-experiment"),
        ("{storage}/no-such-experiment is not a textune experiment",),
    ),
    # S1 (pre-flight): points to evaluate, produced values, mixed choices, numbers out of range, ASHA rungs,
    # small budgets, grid x num_samples, long names and a block size beyond the prepared val split.
    BadInput(
        "space-point-not-in-choice",
        run("search.points_to_evaluate=[{{lr: 0.01, n_heads: 3, head_dim: 16, batch_size: 8}}]"),
        ("search.points_to_evaluate[0].n_heads = 3 is not one of its choice values [2, 4]",),
    ),
    BadInput(
        "space-point-missing-a-key",
        run("search.points_to_evaluate=[{{lr: 0.01}}]"),
        ("search.points_to_evaluate[0].n_heads is missing",),
    ),
    BadInput(
        "space-quniform-fraction-on-an-integer-key",
        run("space.grad_accum={{quniform: [1, 3, 0.5]}}"),
        ("space.grad_accum = 1.5 (quniform [1.0, 3.0, 0.5])", '"grad_accum" = 1.5 is invalid'),
    ),
    BadInput(
        "space-choice-of-mixed-types",
        run("space.ignored_x={{choice: [1, two, 3.5, null, true, [1, 2], {{k: v}}]}}"),
        ('"space.ignored_x"', "choice value [1, 2] is a list"),
    ),
    BadInput("spec-cpu-infinite", run("resources.cpu=.inf"), ('"resources.cpu" = inf', "finite number")),
    BadInput("spec-gpu-infinite", run("resources.gpu=.inf"), ('"resources.gpu" = inf', "finite number")),
    BadInput(
        "spec-min-free-infinite",
        run("storage_options.min_free_gb=.inf"),
        ('"storage_options.min_free_gb" = inf', "finite number"),
    ),
    BadInput("spec-seed-negative", run("seed=-1"), ('"seed" = -1', "expected a number >= 0")),
    BadInput("spec-seed-beyond-32-bits", run("seed=4294967296"), ('"seed" = 4294967296', "4294967295")),
    BadInput(
        "spec-reduction-factor-near-1",
        run("scheduler.reduction_factor=1.0000001"),
        ("scheduler.reduction_factor (1.0000001) gives ASHA", "at most 20 are allowed"),
    ),
    BadInput(
        "spec-small-budget",
        run("budget.max_tokens=20000"),
        (
            "2 problems",
            "budget.eval_every_tokens (50000) exceeds budget.max_tokens (20000)",
            "scheduler.grace_period_tokens (50000) exceeds budget.max_tokens (20000)",
        ),
    ),
    BadInput(
        "spec-grid-times-num-samples",
        run("search.algorithm=grid", "space={{lr: {{grid: [0.01, 0.02]}}}}", "num_samples=2"),
        ("num_samples (2) would run every grid point 2 times", "seed: {{grid: [0, 1, ...]}}"),
    ),
    BadInput(
        "name-too-long",
        ("run", "{quickstart}", "--set=storage={storage}", "--name", "n" * 300),
        ('"name"', "1 to 100 characters", "(this one has 300)"),
    ),
    # The world's cache holds this corpus prepared (a cache hit: nothing is written); its val split has 1000 tokens.
    BadInput(
        "data-block-beyond-the-val-split",
        run("data.synthetic={{characters: 20000}}", "model.block_size=4096", "budget.eval_every_tokens=65536"),
        ("model.block_size = 4096 does not fit the prepared dataset", '"val" split', "has 1000 tokens"),
    ),
    # S2 (YAML): hostile documents in spec files and in --set values, one loader for both.
    BadInput(
        "spec-yaml-duplicate-key",
        ("run", "{tmp}/job.yaml"),
        ("{tmp}/job.yaml at line 3, column 1", 'repeats the key "num_samples" (first given at line 2)'),
        files={"job.yaml": "name: dup\nnum_samples: 4\nnum_samples: 400\n"},
    ),
    BadInput(
        "spec-yaml-alias-bomb",
        ("run", "{tmp}/job.yaml"),
        ("{tmp}/job.yaml at line 2, column 8", "uses the YAML alias *a"),
        files={"job.yaml": ALIAS_BOMB},
    ),
    BadInput(
        "spec-yaml-deep-nesting",
        ("run", "{tmp}/job.yaml"),
        ("{tmp}/job.yaml at line 1", f"more than {MAX_YAML_DEPTH} levels deep"),
        files={"job.yaml": "space: " + "[" * 20000 + "]" * 20000 + "\n"},
    ),
    BadInput(
        "spec-yaml-tag-in-set",
        run("storage=!!python/name:os.system"),
        ('--set "storage=!!python/name:os.system"', "holds a YAML tag that is not plain data"),
    ),
    BadInput("spec-yaml-alias-in-set", run("space.lr=*lr"), ('--set "space.lr=*lr"', "uses the YAML alias *lr")),
    BadInput(
        "spec-yaml-syntax-in-set",
        run("space.lr={{choice: [1e-3, 3e-3}}"),
        ('--set "space.lr={{choice: [1e-3, 3e-3}}": the value is not valid YAML',),
    ),
    # S5 (cluster path): Jobs API URLs that do not parse (the Jobs API client answered with a traceback).
    BadInput(
        "cli-submit-port-out-of-range",
        ("submit", "{quickstart}", "--set=storage={storage}", "--address", "http://127.0.0.1:99999"),
        ('--address "http://127.0.0.1:99999" is not a Jobs API URL', "port from 1 to 65535"),
    ),
    BadInput(
        "cli-jobs-url-without-host",
        ("jobs", "list", "--address", "http://"),
        ('--address "http://" is not a Jobs API URL (it names no host)',),
    ),
    # S6 (command options and paths): every numeric option has a finite range; a path of the wrong sort (a
    # directory for a file, a file for a directory, a missing input, an unwritable place) is named before any work.
    BadInput(
        "data-synthetic-seed-negative",
        ("data", "prepare", "synthetic", "--seed", "-1"),
        ("--seed -1 is invalid", "expected a number >= 0"),
    ),
    BadInput(
        "data-synthetic-characters-beyond-range",
        ("data", "prepare", "synthetic", "--characters", "10" * 8),
        ("--characters 1010101010101010 is invalid", "expected a number <= 1000000000"),
    ),
    BadInput(
        "data-bpe-vocab-size-beyond-range",
        ("data", "prepare", "synthetic", "--tokenizer", "bpe", "--vocab-size", "99999999999"),
        ("--vocab-size 99999999999 is invalid", "expected a number <= 1048576"),
    ),
    BadInput(
        "cli-generate-temperature-nan",
        ("generate", "{experiment}", "--temperature", "nan"),
        ("'--temperature'", "'nan' is not a finite number"),
    ),
    BadInput("cli-generate-top-p-infinite", ("generate", "{experiment}", "--top-p", "inf"), ("'--top-p'",)),
    BadInput(
        "cli-generate-absurd-length",
        ("generate", "{experiment}", "--max-new-tokens", "1000000000"),
        ("'--max-new-tokens'", "1<=x<=1000000"),
    ),
    BadInput("cli-generate-seed-negative", ("generate", "{experiment}", "--seed", "-1"), ("'--seed'", "0<=x<=")),
    BadInput("cli-generate-no-threads", ("generate", "{experiment}", "--threads", "0"), ("'--threads'", "1<=x<=")),
    BadInput("cli-generate-missing-checkpoint", ("generate", "{tmp}/nowhere"), ("{tmp}/nowhere does not exist",)),
    BadInput("cli-train-config-is-a-directory", ("train", "{tmp}"), ("{tmp} is a directory; a file is expected",)),
    BadInput(
        "cli-train-run-dir-is-a-file",
        ("train", "{tmp}/notes.txt", "--run-dir", "{tmp}/notes.txt"),
        ("'--run-dir'", "{tmp}/notes.txt is a file, not a directory"),
        files={"notes.txt": "some notes\n"},
    ),
    BadInput(
        "cli-data-inspect-a-file",
        ("data", "inspect", "{tmp}/notes.txt"),
        ("{tmp}/notes.txt is a file, not a directory",),
        files={"notes.txt": "some notes\n"},
    ),
    BadInput(
        "cli-export-onto-a-directory",
        ("export", "{experiment}", "--out", "{tmp}"),
        ("'--out'", "{tmp} is a directory; a file is expected"),
    ),
    BadInput(
        "cli-export-to-another-format",
        ("export", "{experiment}", "--out", "{tmp}/results.csv"),
        ("--out {tmp}/results.csv names a .csv file, but export writes Parquet", "--out {tmp}/results.parquet"),
    ),
    BadInput(
        "cli-export-unwritable",
        ("export", "{experiment}", "--out", "/proc/textune-export.parquet"),
        ("--out /proc/textune-export.parquet cannot be written", "Choose a --out"),
    ),
    BadInput(
        "cli-report-out-is-a-file",
        ("report", "{experiment}", "--out", "{tmp}/notes.txt"),
        ("'--out'", "{tmp}/notes.txt is a file, not a directory"),
        files={"notes.txt": "some notes\n"},
    ),
    BadInput(
        "cli-report-absurd-seeds", ("report", "{experiment}", "--seeds", "1000000000"), ("'--seeds'", "1<=x<=100")
    ),
    BadInput("storage-question-mark", run("storage={storage}/a?b"), ('may not hold "?"', 'no "?"')),
    BadInput(
        "storage-file-uri-with-a-host",
        run("storage=file://textune-s6-host/runs"),
        ('"textune-s6-host" is read as a host name', "file:///textune-s6-host/runs/fresh"),
    ),
    # S10 (rung-aware TPE): bohb models ASHA's rungs, so it needs ASHA, and TPE takes no grid dimensions.
    BadInput(
        "spec-bohb-without-rungs",
        run("search.algorithm=bohb", "scheduler.kind=fifo"),
        (
            SPEC,
            "search.algorithm bohb models the results at each ASHA rung",
            "scheduler.kind fifo has no rungs",
            "set scheduler.kind to asha",
        ),
    ),
    BadInput(
        "space-grid-under-bohb",
        run("search.algorithm=bohb", "space.batch_size={{grid: [8, 16]}}"),
        (SPEC, "bohb cannot search grid dimensions (batch_size)", "choice: [...]"),
    ),
    # S3 (experiment lifecycle and resume): a run that fails after creating its experiment removes it and the
    # storage directories it made; `run --resume` with a spec that differs from the saved one is refused.
    BadInput(
        "storage-made-by-a-failed-run",
        run("storage={storage}/new/deeper", "data.source={tmp}/nowhere.txt"),
        ('data source "{tmp}/nowhere.txt" does not exist',),
    ),
    BadInput(
        "cli-run-resume-with-a-changed-spec",
        ("run", "{quickstart}", "--set=storage={storage}", "--name", "{name}", "--resume", "--set=num_samples=3"),
        (
            "run --resume: the job spec differs from the one {experiment} was started with",
            "num_samples (saved 8, given 3)",
            "--name NEW_NAME",
        ),
    ),
    # S11 (wsd and annealed rung evaluations): cooldown_fraction lies in (0, 1); wsd's final cooldown may not reach
    # back over ASHA's first rung; the rungs to anneal at are derived, never set.
    BadInput(
        "spec-cooldown-fraction-one",
        run("model.cooldown_fraction=1"),
        (SPEC, '"model.cooldown_fraction" = 1 is invalid', "expected a number < 1"),
    ),
    BadInput(
        "spec-cooldown-fraction-negative",
        run("model.cooldown_fraction=-0.1"),
        (SPEC, '"model.cooldown_fraction" = -0.1 is invalid', "expected a number > 0"),
    ),
    BadInput(
        "spec-wsd-cooldown-over-the-first-rung",
        run("model.lr_schedule=wsd", "model.cooldown_fraction=0.95"),
        (SPEC, "wsd's final cooldown", "first rung at 50000 tokens", "at most 0.9375"),
    ),
    BadInput(
        "spec-anneal-rungs-set-by-hand",
        run("model.anneal_at_tokens=[1000]"),
        ("anneal_at_tokens cannot be set under model:", "ASHA's rungs"),
    ),
    # G (own models): a user's model factory and Hugging Face models are built and run on one tiny batch before Ray
    # starts, on the prepared corpus of the world's cache (as in data-block-beyond-the-val-split).
    BadInput(
        "spec-family-unknown",
        run("model.family=gru"),
        (SPEC, "\"model.family\" = 'gru' is invalid", "transformer, lstm, hf", '"package.module:function"'),
    ),
    BadInput(
        "spec-model-factory-not-importable",
        run("data.synthetic={{characters: 20000}}", "model.family=no_such_module:build"),
        (
            'model.family "no_such_module:build": importing module no_such_module failed',
            "No module named 'no_such_module'",
            "(config, vocab_size)",
        ),
    ),
    BadInput(
        "spec-model-factory-wrong-signature",
        run("data.synthetic={{characters: 20000}}", "model.family=tests.support.plugin_models:no_vocab_size"),
        ('model.family "tests.support.plugin_models:no_vocab_size"', "cannot be called with (config, vocab_size)"),
    ),
    BadInput(
        "spec-model-factory-wrong-shape",
        run("data.synthetic={{characters: 20000}}", "model.family=tests.support.plugin_models:wrong_shape"),
        ('model.family "tests.support.plugin_models:wrong_shape"', "(B, T, vocab_size) were expected"),
    ),
    BadInput(
        "spec-hf-unknown-model-type",
        run("data.synthetic={{characters: 20000}}", "model.family=hf", "model.hf.model_type=gtp2"),
        ("model.hf.model_type 'gtp2' is not a transformers model type", "did you mean gpt2"),
    ),
    BadInput(
        "spec-hf-missing-pretrained",
        run("data.synthetic={{characters: 20000}}", "model.family=hf", "model.pretrained={tmp}/no-model"),
        ('model.pretrained "{tmp}/no-model" does not exist', "save_pretrained"),
    ),
    BadInput(
        "spec-hf-keys-on-the-transformer",
        run("model.hf.model_type=gpt2"),
        (SPEC, "hf and pretrained apply to family hf only (family is transformer)"),
    ),
    # Slice E (issue 16, point 12): both metrics are minimised.
    BadInput(
        "spec-mode-max",
        run("mode=max"),
        ('"mode"', "both metrics (val_bpc, val_ppl) are minimised", "remove mode: or set it to min"),
    ),
    # Slice J (issue 17): `data prepare --tokenizer-path` names a missing tokenizer before any directory is made.
    BadInput(
        "data-prepare-missing-tokenizer-path",
        ("data", "prepare", "synthetic", "--tokenizer", "pretrained", "--tokenizer-path", "{tmp}/no-model"),
        ('data.tokenizer.path "{tmp}/no-model" holds no tokenizer.json (it does not exist)', "--tokenizer-path"),
    ),
    BadInput(
        "data-prepare-tokenizer-path-without-tokenizer-json",
        (
            "data",
            "prepare",
            "{tmp}/corpus.txt",
            "--tokenizer",
            "pretrained",
            "--tokenizer-path",
            "{tmp}",
            "--out",
            "{tmp}/prepared",
        ),
        ('data.tokenizer.path "{tmp}" holds no tokenizer.json.', "save_pretrained"),
        files={"corpus.txt": "a corpus to prepare with a model's tokenizer\n" * 50},
    ),
    # Slice K (checks that came too late or spoke the wrong words). A model that cannot be built is refused before
    # the data is prepared: the quickstart's corpus is not in the world's cache, so a preparation would change it.
    BadInput(
        "spec-model-factory-not-importable-before-the-data",
        run("model.family=no_such_module:build"),
        ('model.family "no_such_module:build": importing module no_such_module failed',),
    ),
    BadInput(
        "spec-hf-missing-pretrained-before-the-data",
        run("model.family=hf", "model.pretrained={tmp}/no-model"),
        ('model.pretrained "{tmp}/no-model" does not exist', "save_pretrained"),
    ),
    BadInput(
        "cli-train-factory-not-importable-before-the-data",
        ("train", "{tmp}/train.yaml", "--run-dir", "{tmp}/run"),
        ('training config {tmp}/train.yaml: family "no_such_module:build": importing module no_such_module failed',),
        files={
            "train.yaml": "data: {source: synthetic, synthetic: {characters: 30000}}\nfamily: no_such_module:build\n"
        },
    ),
    BadInput(
        "cli-train-hf-missing-pretrained-before-the-data",
        ("train", "{tmp}/train.yaml", "--run-dir", "{tmp}/run", "--set", "pretrained={tmp}/no-model"),
        ('training config {tmp}/train.yaml: pretrained "{tmp}/no-model" does not exist',),
        files={"train.yaml": "data: {source: synthetic, synthetic: {characters: 30000}}\nfamily: hf\n"},
    ),
    # Budgets below one batch: the quickstart searches batch_size [8, 16] with model.block_size 64.
    BadInput(
        "spec-budget-below-the-largest-batch",
        run("budget.max_tokens=1000", "budget.eval_every_tokens=1000", "scheduler.grace_period_tokens=1000"),
        (
            SPEC,
            "budget.max_tokens (1000) is less than one batch, batch_size 16 (the largest of space.batch_size) x "
            "block_size 64 (model.block_size) = 1024 tokens",
            "set budget.max_tokens to at least 1024",
        ),
    ),
    BadInput(
        "spec-evaluation-interval-below-a-batch",
        run("budget.eval_every_tokens=1000"),
        (
            SPEC,
            "budget.eval_every_tokens (1000) is less than one batch",
            "set budget.eval_every_tokens to at least 1024",
        ),
    ),
    BadInput(
        "cli-train-budget-below-a-batch",
        ("train", "{tmp}/train.yaml", "--run-dir", "{tmp}/run"),
        (
            "training config {tmp}/train.yaml: max_tokens (100) is less than one batch, batch_size 8 x block_size 32 "
            "= 256 tokens",
            "set max_tokens to at least 256",
        ),
        files={"train.yaml": "data: {source: synthetic}\nbatch_size: 8\nblock_size: 32\nmax_tokens: 100\n"},
    ),
    # Command-line values are named by their option, not by the config key they set.
    BadInput(
        "data-prepare-pretrained-without-tokenizer-path",
        ("data", "prepare", "synthetic", "--tokenizer", "pretrained"),
        ("textune data prepare: --tokenizer-path is not given", "save_pretrained directory", "Fix the option"),
    ),
    BadInput(
        "cli-cluster-up-no-workers",
        ("cluster", "up", "--workers", "-1", "--state-dir", "{tmp}/cluster"),
        ("cluster up: --workers -1 is invalid", "expected a number >= 0"),
    ),
    BadInput("cli-replay-seeds-negative", ("replay", "{experiment}", "--seeds", "-1"), ("textune replay: --seeds -1",)),
    BadInput(
        "cli-replay-throughput-nan",
        ("replay", "{experiment}", "--throughput", "nan"),
        ("textune replay: --throughput nan is invalid", "finite number"),
    ),
    # J (simulated searches): a search textune replay simulated trained nothing; commands that need what training
    # leaves behind refuse it (the row's directory is one: its marker and spec). The rest: test_replay_simulated.py.
    *(
        BadInput(
            f"cli-{command}-simulated-search",
            (command, "{tmp}"),
            ("{tmp} is a simulated search", f"so it has no {lacks}", hint),
            files={"textune-job.yaml": "name: sim\n", "textune-simulated.json": "{}\n"},
        )
        for command, lacks, hint in (
            ("generate", "checkpoint and no best/", "textune confirm {tmp} --top-k 1 --seeds 1"),
            ("tensorboard", "TensorBoard files", "textune confirm {tmp} --top-k 1 --seeds 1"),
            ("replay", "recorded curves of its own to replay", "Replay the experiment it replayed instead"),
        )
    ),
    # Slice M (textune replay writes): ASHA options with only FIFO strategies, a rung algorithm without ASHA, and
    # a missing experiment said to be missing. A live run's refusal holds a lock: test_replay_cli.py.
    BadInput(
        "cli-replay-asha-options-with-fifo-only",
        ("replay", "{experiment}", "--strategy", "random+fifo", "--grace-period-tokens", "1024"),
        ("--grace-period-tokens sets ASHA's rungs", "(random+fifo) uses FIFO", "--strategy random+asha"),
    ),
    BadInput(
        "cli-replay-both-asha-options-with-fifo-only",
        ("replay", "{experiment}", "--strategy", "grid+fifo", "--reduction-factor", "3", "--grace-period-tokens", "9"),
        ("--grace-period-tokens and --reduction-factor set ASHA's rungs", "would be ignored"),
    ),
    BadInput(
        "cli-replay-bohb-without-asha",
        ("replay", "{experiment}", "--strategy", "bohb+fifo"),
        ('--strategy "bohb+fifo": bohb models ASHA\'s rungs', "Use --strategy bohb+asha"),
    ),
    *(
        BadInput(
            f"cli-{command[0]}-missing-experiment",
            (command[0], "{storage}/no-such-experiment", *command[1:]),
            ("{storage}/no-such-experiment is not a textune experiment: the directory does not exist",),
        )
        for command in (("replay",), ("best",), ("export", "--out", "{tmp}/x.parquet"))
    ),
    BadInput(
        "cli-replay-directory-without-spec",
        ("replay", "{tmp}"),
        ("{tmp} is not a textune experiment: there is no textune-job.yaml in it",),
        files={"notes.txt": "not an experiment\n"},
    ),
    # Slice N (replay tables): an experiment's replay/table/manifest.json that is not a table manifest (it used to
    # be a TypeError traceback). Malformed manifests of every kind, read by load_table: tests/test_replay_table.py.
    *(
        BadInput(
            f"cli-replay-table-manifest-{kind}",
            ("replay", "{experiment}"),
            ("table manifest {experiment}/replay/table/manifest.json", fragment, "delete {experiment}/replay/table"),
            experiment_files={"replay/table/manifest.json": content, "replay/table/curves.parquet": "not Parquet\n"},
        )
        for kind, content, fragment in (
            ("checksum-of-the-wrong-type", '{"parquet_sha256": 5}', '"parquet_sha256" = 5 is invalid: expected text'),
            ("not-json", '{"format": 1,', "is not valid JSON (line 1, column 14"),
            ("not-an-object", "[1, 2, 3]", "is not a JSON object (it holds [1, 2, 3])"),
        )
    ),
    # A value of the wrong type is shown, cut short, with what the key accepts.
    BadInput(
        "spec-split-of-the-wrong-type",
        run("data.split=[0.8, 0.1, 0.1]"),
        (
            '"data.split" = [0.8, 0.1, 0.1] is invalid: expected a mapping with the keys train, val, test '
            "(e.g. {{train: 0.9, val: 0.05, test: 0.05}})",
        ),
    ),
    BadInput(
        "spec-split-with-an-unknown-key",
        run("data.split={{a: 1}}"),
        ('unknown key "data.split.a"', "Valid keys here: test, train, val"),
    ),
    BadInput(
        "spec-long-value-of-the-wrong-type",
        run("data.source=[" + ", ".join(["a-long-corpus-name"] * 50) + "]"),
        ("\"data.source\" = ['a-long-corpus-name', 'a-long-corpus-name',", "...] is invalid: expected text"),
    ),
    BadInput(
        "spec-truth-value-for-a-number",
        run("num_samples=true"),
        ('"num_samples" = True is invalid: expected a number, not true or false',),
    ),
    # Slice P (faults a fresh user hit): a trial asked to train on cuda with resources.gpu 0 never gets a GPU from
    # Ray, fixed or searched; refused before the data is prepared (the quickstart's corpus is not in the cache).
    *(
        BadInput(
            f"spec-cuda-without-a-gpu-{kind}",
            run(*settings),
            (SPEC, where, "resources.gpu is 0", "Set resources.gpu", fix),
        )
        for kind, settings, where, fix in (
            ("fixed", ("model.device=cuda",), "model.device is cuda", "set model.device to cpu or auto"),
            (
                "searched",
                ("space.device={{choice: [cpu, cuda]}}",),
                "space.device can be cuda",
                "remove cuda from space.device",
            ),
        )
    ),
    # Slice Q (messages a fresh user found unclear): a bound or a choice is said in the user's words with a
    # did-you-mean; an empty config file is named as empty; an option for another kind of source is refused; a
    # file given for an experiment directory is named as a file; a key fixed under model: is named as model.KEY.
    BadInput("spec-num-samples-zero", run("num_samples=0"), ('"num_samples" = 0 is invalid: expected a number >= 1.',)),
    BadInput(
        "spec-algorithm-typo",
        run("search.algorithm=hyperop"),
        (
            "\"search.algorithm\" = 'hyperop' is invalid: expected one of hyperopt, random, grid, bohb "
            '(did you mean "hyperopt"?)',
        ),
    ),
    BadInput(
        "data-split-negative",
        ("data", "prepare", "synthetic", "--split", "0.9,0.2,-0.1"),
        ("--split (test -0.1) is invalid: expected a number >= 0", "Fix the option"),
    ),
    BadInput(
        "data-characters-negative",
        ("data", "prepare", "synthetic", "--characters", "-5"),
        ("--characters -5 is invalid: expected a number > 0",),
    ),
    BadInput(
        "cli-replay-fill-unknown",
        ("replay", "{experiment}", "--fill", "magic"),
        ("--fill magic is invalid: expected one of nearest, surrogate",),
    ),
    BadInput(
        "cli-replay-throughput-negative",
        ("replay", "{experiment}", "--throughput", "-3"),
        ("--throughput -3.0 is invalid: expected a number > 0",),
    ),
    BadInput(
        "cli-replay-reduction-factor-one",
        ("replay", "{experiment}", "--reduction-factor", "1"),
        ("--reduction-factor 1.0 is invalid: expected a number > 1", "Fix the option"),
    ),
    BadInput(
        "cli-replay-grace-beyond-budget",
        ("replay", "{experiment}", "--grace-period-tokens", "99999999"),
        ("--grace-period-tokens 99999999 exceeds the recorded budget.max_tokens", "leave the option out"),
    ),
    *(
        BadInput(
            f"cli-{command}-{kind}-file",
            (command, "{tmp}/c.yaml"),
            (f"{what} {{tmp}}/c.yaml is empty",),
            files={"c.yaml": text},
        )
        for command, what in (("run", "job spec"), ("train", "training config"))
        for kind, text in (("empty", ""), ("blank", "  \n\n"), ("comment-only", "# a job spec, one day\n"))
    ),
    *(
        BadInput(
            f"data-{option[2:]}-for-another-source",
            ("data", "prepare", "{tmp}/" + name, option, "body"),
            (f'{option} applies to {sources} only, not "{{tmp}}/{name}"',),
            files={name: "some text\n"},
        )
        for option, name, sources in (
            ("--text-field", "corpus.txt", "JSONL sources (.jsonl)"),
            ("--text-column", "corpus.jsonl", "Parquet/Arrow sources (.parquet, .arrow, .feather)"),
        )
    ),
    BadInput(
        "cli-replay-a-file",
        ("replay", "{tmp}/q.yaml"),
        ("{tmp}/q.yaml is not a textune experiment: it is a file, not an experiment directory",),
        files={"q.yaml": "name: q\n"},
    ),
    BadInput(
        "cli-train-unknown-key",
        ("train", "{tmp}/t.yaml", "--set", "lrr=1"),
        ('unknown key "lrr". Did you mean "lr"?',),
        files={"t.yaml": "dataset_dir: data\n"},
    ),
    BadInput(
        "spec-fixed-family-refused",
        run("model.family=my models:build"),
        (SPEC + ": \"model.family\" = 'my models:build' is invalid", "Fix model.family"),
    ),
]


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
    prepared = run_textune(
        "data", "prepare", "synthetic", "--characters", "20000", env={"TEXTUNE_CACHE_DIR": str(template / "cache")}
    )
    assert prepared.returncode == 0, prepared.stderr

    def prepare(case: BadInput) -> tuple[Path, dict[str, Path]]:
        root = tmp_path_factory.mktemp(case.id)
        world, inputs = root / "world", root / "inputs"
        shutil.copytree(template, world, symlinks=True)
        inputs.mkdir()
        for name, content in case.files.items():
            (inputs / name).write_text(content, encoding="utf-8")
        storage = world / "storage"
        for name, content in case.experiment_files.items():
            (storage / finished_experiment.name / name).parent.mkdir(parents=True, exist_ok=True)
            (storage / finished_experiment.name / name).write_text(content, encoding="utf-8")
        return world, {
            "quickstart": QUICKSTART,
            "storage": storage,
            "experiment": storage / finished_experiment.name,
            "name": Path(finished_experiment.name),
            "tmp": inputs,
        }

    def attempt(case: BadInput, world: Path, fill: dict[str, Path]) -> Outcome:
        before = snapshot(world)
        result = run_textune(
            *(arg.format(**fill) for arg in case.args), env={"TEXTUNE_CACHE_DIR": str(world / "cache")}, timeout=300
        )
        return Outcome(result, before, snapshot(world), snapshot(fill["tmp"]), fill)

    prepared_rows = [prepare(case) for case in BAD_INPUTS]
    with ThreadPoolExecutor(max_workers=4) as pool:
        runs = [pool.submit(attempt, case, *row) for case, row in zip(BAD_INPUTS, prepared_rows, strict=True)]
        return {case.id: run.result() for case, run in zip(BAD_INPUTS, runs, strict=True)}


def test_the_battery_is_broad() -> None:
    assert len(BAD_INPUTS) >= 25
    assert len({case.id for case in BAD_INPUTS}) == len(BAD_INPUTS)
    assert {case.id.split("-")[0] for case in BAD_INPUTS} == {"spec", "space", "name", "storage", "data", "cli"}


@pytest.mark.parametrize("case", BAD_INPUTS, ids=[case.id for case in BAD_INPUTS])
def test_bad_input_gets_one_paragraph_and_exit_2_and_changes_nothing(
    case: BadInput, outcomes: dict[str, Outcome]
) -> None:
    outcome = outcomes[case.id]
    assert_user_error(outcome.result, *(fragment.format(**outcome.fill) for fragment in case.fragments))
    assert len(outcome.result.stderr.strip().splitlines()) == 1, outcome.result.stderr
    assert outcome.world_after == outcome.world_before
    assert outcome.inputs_after == {
        name: hashlib.sha256(content.encode()).hexdigest() for name, content in case.files.items()
    }
