"""Values keep their type from spec to results: results.parquet, ``best`` and ``best --json``, TensorBoard's
HParams domains and sessions, and every JSON textune writes (strict: no NaN, no Infinity).

The table, HParams and JSON tests run on real files without Ray. One tiny real search (two trials of a
one-layer model, one evaluation each) checks the issue's examples end to end through the CLI: the types
have to survive YAML, Ray's trial configs and the results table together, which nothing short of a run shows.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2

from conftest import run_textune
from models.config import parse_trial_config
from support.jobs import CONFIGS
from support.tensorboard import session_file
from textune import strict_json
from tune_jobs.experiment import EVALUATIONS_FILE, RESULTS_FILE, experiment_at
from tune_jobs.hparams import EVENTS_FILE, SESSION_PREFIX, write_experiment_config, write_hparams, write_running_session
from tune_jobs.results.parquet import read_trials, write_tables
from tune_jobs.results.table import ExperimentResults, config_column, searched_config
from tune_jobs.space import Dimension, base_sample, trainer_params
from tune_jobs.spec import fixed_trial_params, load_spec

# One choice per kind of value: its values, and the Arrow type of its column in results.parquet.
KINDS: dict[str, tuple[list[Any], pa.DataType]] = {
    "bool": ([True, False], pa.bool_()),
    "int": ([2, 4], pa.int64()),
    "float": ([0.001, 0.003], pa.float64()),
    "int-and-float": ([1, 0.5], pa.float64()),
    "str": (["rotary", "learned"], pa.string()),
    "null-int": ([None, 8], pa.int64()),
    "null-float": ([0.5, None], pa.float64()),
    "null-bool": ([None, True], pa.bool_()),
    "null-str": (["rotary", None], pa.string()),
}
# The HParams type a domain (and so every session value) must have, per kind.
HPARAM_TYPES = {
    "bool": api_pb2.DATA_TYPE_BOOL,
    "int": api_pb2.DATA_TYPE_FLOAT64,
    "float": api_pb2.DATA_TYPE_FLOAT64,
    "int-and-float": api_pb2.DATA_TYPE_FLOAT64,
    "str": api_pb2.DATA_TYPE_STRING,
}
VALUE_KINDS = {
    api_pb2.DATA_TYPE_BOOL: "bool_value",
    api_pb2.DATA_TYPE_FLOAT64: "number_value",
    api_pb2.DATA_TYPE_STRING: "string_value",
}


def strict_loads(text: str) -> Any:
    """JSON as a strict parser reads it: NaN, Infinity and -Infinity are errors."""

    def refuse(constant: str) -> None:
        raise ValueError(f"not JSON: {constant}")

    return json.loads(text, parse_constant=refuse)


def trials_table(columns: dict[str, list[Any]], tmp_path: Path) -> pd.DataFrame:
    """A results table of two trials with the given searched columns, as collect() builds it."""
    rows = len(next(iter(columns.values())))
    trials = pd.DataFrame(
        {
            "trial_id": [f"t{i}" for i in range(rows)],
            "status": ["completed"] * rows,
            **{f"config/{name}": config_column(values) for name, values in columns.items()},
            "tokens": [1024] * rows,
            "flops": [1e9] * rows,
            "wall_time_s": [1.0] * rows,
            "device_kind": ["cpu_core"] * rows,
            "device_hours": [1 / 3600] * rows,
            "best_metric": [2.0 + i for i in range(rows)],
            "best_val_bpc": [2.0 + i for i in range(rows)],
            "best_val_ppl": [4.0] * rows,
            "floor_bpc": [1.0] * rows,
            "last_val_bpc": [2.0 + i for i in range(rows)],
            "last_val_ppl": [4.0] * rows,
            "checkpoint": [None] * rows,
            "trial_dir": [str(tmp_path / f"trial_{i}") for i in range(rows)],
            "error": [None] * rows,
        }
    )
    return trials


EVALUATIONS = pd.DataFrame({"trial_id": ["t0"], "tokens": [1024]})


@pytest.mark.parametrize("kind", KINDS)
def test_config_columns_keep_their_type_in_results_parquet(kind: str, tmp_path: Path) -> None:
    values, arrow_type = KINDS[kind]
    experiment = experiment_at(str(tmp_path), "typed")
    filesystem, root = experiment.filesystem()
    filesystem.create_dir(root)
    results = ExperimentResults(trials_table({"x": values}, tmp_path), EVALUATIONS)
    write_tables(results, f"{root}/{RESULTS_FILE}", f"{root}/{EVALUATIONS_FILE}", filesystem)

    column = pq.read_table(f"{root}/{RESULTS_FILE}").column("config/x")
    assert (pa.string() if pa.types.is_large_string(column.type) else column.type) == arrow_type
    assert column.null_count == values.count(None)  # a null is a Parquet null, never NaN
    # A column of integers and floats is a column of numbers: its integers come back as floats.
    expected = [float(v) for v in values] if kind == "int-and-float" else values
    assert column.to_pylist() == expected
    read_back = [searched_config(row)["x"] for _, row in read_trials(experiment).iterrows()]
    assert read_back == expected
    assert [type(v) for v in read_back] == [type(v) for v in expected]


def hparam_records(events: Path) -> list[plugin_data_pb2.HParamsPluginData]:
    """The HParams plugin records of the driver's event file ``events``."""
    records = []
    for event in EventFileLoader(str(events)).Load():
        for value in event.summary.value:
            if value.metadata.plugin_data.plugin_name == metadata.PLUGIN_NAME:
                records.append(plugin_data_pb2.HParamsPluginData.FromString(value.metadata.plugin_data.content))
    return records


def assert_sessions_match_domains(experiment_dir: Path, trial_dirs: list[Path]) -> dict[str, int]:
    """Every session value has its domain's type and lies in a discrete domain; the declared types by name."""
    (experiment,) = [r.experiment for r in hparam_records(experiment_dir / EVENTS_FILE) if r.HasField("experiment")]
    infos = {info.name: info for info in experiment.hparam_infos}
    for trial_dir in trial_dirs:
        records = hparam_records(session_file(trial_dir))
        (start,) = [r.session_start_info for r in records if r.HasField("session_start_info")]
        for name, value in start.hparams.items():
            info = infos[name]
            assert value.WhichOneof("kind") == VALUE_KINDS[info.type], (name, value, info)
            if info.domain_discrete.values:
                assert value in info.domain_discrete.values, (name, value, info.domain_discrete)
    return {name: info.type for name, info in infos.items()}


def test_hparams_domains_have_the_type_of_their_session_values(tmp_path: Path) -> None:
    """Choices of every kind, and ranges, written from a results table read back from Parquet."""
    space = {f"x_{kind}": Dimension(choice=values) for kind, (values, _) in KINDS.items()}
    space.update({"lr": Dimension(loguniform=[1e-4, 1e-2]), "n_layers": Dimension(randint=[1, 3])})
    columns = {name: dimension.values for name, dimension in space.items() if dimension.kind == "choice"}
    columns.update({"lr": [1e-3, 2e-3], "n_layers": [1, 3]})
    experiment = experiment_at(str(tmp_path), "typed")
    filesystem, root = experiment.filesystem()
    filesystem.create_dir(root)
    write_tables(
        ExperimentResults(trials_table(columns, Path(root)), EVALUATIONS),
        f"{root}/{RESULTS_FILE}",
        f"{root}/{EVALUATIONS_FILE}",
        filesystem,
    )
    trials = read_trials(experiment)

    write_hparams(filesystem, root, space, trials)
    types = assert_sessions_match_domains(Path(root), [Path(root) / Path(d).name for d in trials["trial_dir"]])
    for kind, wanted in HPARAM_TYPES.items():
        assert types[f"x_{kind}"] == wanted, kind
    for kind in KINDS:
        if kind.startswith("null-"):  # null and a value: text, both filterable ("null", "8")
            assert types[f"x_{kind}"] == api_pb2.DATA_TYPE_STRING
    assert types["lr"] == types["n_layers"] == api_pb2.DATA_TYPE_FLOAT64


def test_a_searched_hf_key_has_one_name_in_the_hparams_domains_and_sessions(tmp_path: Path) -> None:
    """family hf: the space key n_embd goes into the trial's hf: (its hyperparameters() name it hf.n_embd), while
    the experiment's domains and every session, running and final, name it as the space does, so the dashboard
    shows each trial's searched width under the one name it filters by."""
    spec = load_spec(CONFIGS / "hf-gpt2-scratch.yaml", [])
    samples = [{**base_sample(spec.space), "n_embd": width} for width in (128, 256)]  # Ray's trial.config
    trials = trials_table({name: [sample[name] for sample in samples] for name in spec.space}, tmp_path)
    filesystem, root = experiment_at(str(tmp_path), "hf").filesystem()
    filesystem.create_dir(root)
    trial_dirs = [Path(root) / Path(directory).name for directory in trials["trial_dir"]]

    def assert_sessions_name_the_space_keys() -> None:
        types = assert_sessions_match_domains(Path(root), trial_dirs)
        assert set(spec.space) < set(types) and not any(name.startswith("hf.") for name in types)
        for trial_dir, sample in zip(trial_dirs, samples, strict=True):
            records = hparam_records(session_file(trial_dir))
            (start,) = [r.session_start_info for r in records if r.HasField("session_start_info")]
            assert set(spec.space) < set(start.hparams)
            config = parse_trial_config({**fixed_trial_params(spec, "unused"), **trainer_params(sample)})
            assert start.hparams["n_embd"].number_value == config.hf["n_embd"] == sample["n_embd"]
            assert config.hyperparameters()["hf.n_embd"] == sample["n_embd"]

    write_experiment_config(filesystem, root, spec.space)
    for trial_dir, sample in zip(trial_dirs, samples, strict=True):
        write_running_session(filesystem, str(trial_dir), spec.space, sample)
    assert_sessions_name_the_space_keys()
    write_hparams(filesystem, root, spec.space, trials)
    assert_sessions_name_the_space_keys()


@pytest.mark.parametrize(
    "document, text",
    [
        ({"metric": math.nan}, '{"metric": null}'),
        ({"metric": math.inf, "low": -math.inf}, '{"metric": "inf", "low": "-inf"}'),
        ({"nested": [1.5, (math.nan, {"x": math.inf})]}, '{"nested": [1.5, [null, {"x": "inf"}]]}'),
        ({"ok": [0.001, None, True, "NaN"]}, '{"ok": [0.001, null, true, "NaN"]}'),
    ],
)
def test_strict_json_writes_no_nan_or_infinity(document: dict[str, Any], text: str) -> None:
    assert strict_json.dumps(document) == text
    strict_loads(text)


# --- The examples through a real search -------------------------------------------------------------

TYPED_JOB = """\
name: typed
data: {source: synthetic, synthetic: {characters: 20000}}
model: {n_layers: 1, n_heads: 2, head_dim: 8, block_size: 32, batch_size: 8, sample_tokens: 0}
budget: {max_tokens: 1024, eval_every_tokens: 1024}
space:
  lr: {choice: [1e-3, 3e-3]}
  eval_max_blocks: {choice: [null, 8]}
  ignored_flag: {choice: [true, false]}
search:
  algorithm: random
  points_to_evaluate:
    - {lr: 1e-3, eval_max_blocks: null, ignored_flag: true}
    - {lr: 3e-3, eval_max_blocks: 8, ignored_flag: false}
scheduler: {kind: fifo}
num_samples: 2
max_concurrent_trials: 2
"""


@pytest.fixture(scope="module")
def typed_experiment(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The two-trial search of the issue's examples, run once through the CLI (about a Ray start-up)."""
    root = tmp_path_factory.mktemp("typed")
    job = root / "job.yaml"
    job.write_text(TYPED_JOB, encoding="utf-8")
    result = run_textune(
        "run",
        str(job),
        f"--set=storage={root / 'storage'}",
        env={"TEXTUNE_CACHE_DIR": str(root / "cache")},
        timeout=480,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return root / "storage" / "typed"


@pytest.mark.timeout(600)
@pytest.mark.slow
def test_results_parquet_keeps_floats_nulls_and_booleans(typed_experiment: Path) -> None:
    table = pq.read_table(typed_experiment / RESULTS_FILE)
    lr, blocks, flag = (table.column(f"config/{n}") for n in ("lr", "eval_max_blocks", "ignored_flag"))
    assert lr.type == pa.float64() and sorted(lr.to_pylist()) == [0.001, 0.003]
    assert blocks.type == pa.int64() and blocks.null_count == 1 and sorted(blocks.to_pylist(), key=str) == [8, None]
    assert flag.type == pa.bool_() and sorted(flag.to_pylist()) == [False, True]


@pytest.mark.timeout(600)
@pytest.mark.slow
def test_best_prints_numbers_and_strict_json(typed_experiment: Path) -> None:
    as_json = run_textune("best", str(typed_experiment), "--json")
    assert as_json.returncode == 0, as_json.stderr
    summary = strict_loads(as_json.stdout)
    trials = read_trials(experiment_at(str(typed_experiment.parent), typed_experiment.name))
    configs = {row["trial_id"]: searched_config(row) for _, row in trials.iterrows()}
    config = summary["config"]
    assert config == configs[summary["trial_id"]]
    assert (config["lr"], config["eval_max_blocks"], config["ignored_flag"]) in [(0.001, None, True), (0.003, 8, False)]
    assert type(config["lr"]) is float

    text = run_textune("best", str(typed_experiment))
    assert text.returncode == 0, text.stderr
    shown = {
        "lr": f"{config['lr']:g}",
        "eval_max_blocks": "null" if config["eval_max_blocks"] is None else "8",
        "ignored_flag": str(config["ignored_flag"]),
    }
    assert (
        f"config: lr={shown['lr']}, eval_max_blocks={shown['eval_max_blocks']}, "
        f"ignored_flag={shown['ignored_flag']}" in text.stdout
    ), text.stdout


@pytest.mark.timeout(600)
@pytest.mark.slow
def test_hparams_of_the_run_declare_the_types_of_their_values(typed_experiment: Path) -> None:
    trial_dirs = sorted(path for path in typed_experiment.iterdir() if any(path.glob(f"{SESSION_PREFIX}*")))
    assert len(trial_dirs) == 2
    types = assert_sessions_match_domains(typed_experiment, trial_dirs)
    assert types["lr"] == api_pb2.DATA_TYPE_FLOAT64
    assert types["ignored_flag"] == api_pb2.DATA_TYPE_BOOL
    assert types["eval_max_blocks"] == api_pb2.DATA_TYPE_STRING


@pytest.mark.timeout(600)
@pytest.mark.slow
def test_json_files_textune_wrote_are_strict(typed_experiment: Path) -> None:
    written = sorted((typed_experiment / "best").glob("*.json"))
    assert written
    for path in written:
        strict_loads(path.read_text(encoding="utf-8"))
