"""``textune replay``: other strategies replayed against a finished experiment's own curves.

Everything a replay needs is checked before anything is written (:func:`prepare_replay`); then
:func:`stage_replay` writes the new replay complete into a hidden ``replay/.staging-*`` directory and
:func:`publish_replay` swaps it in with renames, the old entries going to a hidden ``replay/.previous-*`` that is
removed last. So ``replay/`` holds one replay, whole: the previous one until the swap, then exactly what the new
replay.json describes (an old search's folders do not stay beside it). Nothing is written outside
``EXPERIMENT/replay/``::

    replay/table/          the experiment's learning-curve table (curves.parquet + manifest.json)
    replay/replay.json     the comparison: per strategy, IQM and 95% CI of regret and of the cost to reach
                           the experiment's best (within 0%, 1%, 2%), the share of seeds that reached it, the
                           extrapolated share; the fill method and its held-out error
    replay/replay.png      anytime regret against tokens and device-hours
    replay/searches/SLUG/  seed 0 of each strategy as a simulated experiment (textune-simulated.json,
                           textune-job.yaml, results.parquet, evaluations.parquet): ``textune best``,
                           ``analyze`` and ``report`` read it; commands that need checkpoints refuse it

A ``.staging-*`` or ``.previous-*`` left by a replay killed mid-way is removed by the next replay; readers
look only at the names above.
"""

from __future__ import annotations

import json
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pyarrow.fs
from pydantic import Field, PositiveInt

from textune import strict_json
from textune.config import StrictModel, dump_yaml, validate
from textune.errors import TextuneError
from tune_jobs.cost import experiment_cost
from tune_jobs.experiment import (
    EVALUATIONS_FILE,
    RESULTS_FILE,
    SIMULATED_FILE,
    SPEC_FILE,
    Experiment,
    require_trained,
)
from tune_jobs.replay.lookup import CurveLookup, Fill, held_out_error
from tune_jobs.replay.strategies import DEFAULT_STRATEGIES, Strategy, grid_points, parse_strategies, strategy_spec
from tune_jobs.replay.table import MANIFEST_FILE, CurveTable, load_table, table_from_experiment, write_table
from tune_jobs.results.parquet import read_trials, write_tables
from tune_jobs.results.table import ExperimentResults

REPLAY_DIR = "replay"
TABLE_DIR = "table"
SEARCHES_DIR = "searches"
JSON_FILE = "replay.json"
PLOT_FILE = "replay.png"
# Hidden names in replay/: a replay's own staging directory and the previous replay's entries during the swap.
STAGING_PREFIX = ".staging-"
PREVIOUS_PREFIX = ".previous-"
# Above this extrapolated share a replay warns that its numbers come mostly from the fill, not the recording.
WARN_EXTRAPOLATED_SHARE = 0.2


class ReplayOptions(StrictModel):
    """The command line of ``textune replay`` (see its --help)."""

    strategies: list[str] = []
    workers: PositiveInt | None = None
    seeds: PositiveInt = 10
    trials: PositiveInt | None = None
    grace_period_tokens: list[PositiveInt] = []
    reduction_factors: list[float] = []
    fill: Literal["nearest", "surrogate"] = "surrogate"
    # FLOPs per second of one trial's devices: evaluations then take their recorded FLOPs over it, not their
    # recorded wall seconds (a replay for a faster or slower device).
    throughput_flops_per_s: float | None = Field(default=None, gt=0, allow_inf_nan=False)


@dataclass
class PreparedReplay:
    """A checked replay: nothing has been written yet."""

    experiment: Experiment
    directory: Path
    table: CurveTable
    strategies: list[Strategy]
    workers: int
    seeds: int
    trials: int
    fill: Fill
    throughput_flops_per_s: float | None = None


def prepare_replay(experiment: Experiment, raw_options: dict[str, Any]) -> PreparedReplay:
    """Check the options and the experiment's curves; refuse a recorded table that fails its checksum."""
    options = validate(
        ReplayOptions,
        raw_options,
        "textune replay options (--strategy, --workers, --seeds, --trials, "
        "--grace-period-tokens, --reduction-factor, --fill, --throughput)",
    )
    simulation = experiment.simulation()
    if simulation is not None:  # a replay of a replay would take extrapolated curves for recorded ones
        source = simulation.get("replayed_from", "EXPERIMENT")
        hint = f"Replay the experiment it replayed instead: textune replay {source}"
        require_trained(experiment, "recorded curves of its own to replay", hint)
    directory = experiment.local_path() / REPLAY_DIR
    _refuse_trained_inside(directory)
    table = table_from_experiment(experiment)
    if (directory / TABLE_DIR / MANIFEST_FILE).is_file():
        load_table(directory / TABLE_DIR)  # a changed table is reported, never silently replaced
    spec = table.spec
    trials = options.trials or len(read_trials(experiment))
    names = options.strategies or [
        name for name in DEFAULT_STRATEGIES if name != "grid+fifo" or grid_points(table) <= trials
    ]
    strategies = parse_strategies(names, spec, list(options.grace_period_tokens), list(options.reduction_factors))
    _refuse_unused_asha_options(options, strategies)
    for strategy in strategies:
        strategy_spec(table, strategy, 0, trials)  # a setting no spec accepts fails here, before anything runs
    workers = options.workers or spec.max_concurrent_trials or 1
    throughput = options.throughput_flops_per_s
    if throughput is not None and not table.curves["flops"].fillna(0.0).gt(0).all():
        raise TextuneError(
            f"--throughput times evaluations by their FLOPs, but some evaluations of experiment {experiment.root} "
            "record none (a trainer that does not count FLOPs).",
            "Replay it without --throughput: evaluations then take their recorded wall seconds.",
        )
    return PreparedReplay(
        experiment, directory, table, strategies, workers, options.seeds, trials, options.fill, throughput
    )


@dataclass
class StagedReplay:
    """A new replay written complete into ``staging`` (inside ``directory``, EXPERIMENT/replay), not yet in place."""

    directory: Path
    staging: Path
    document: dict[str, Any]


def stage_replay(prepared: PreparedReplay) -> StagedReplay:
    """Replay every strategy and write the new replay into a hidden staging directory inside replay/.

    The paths in the document (its ``plot``) are where :func:`publish_replay` puts the files. Leftovers of an
    earlier replay that was killed are removed first. Interrupted or failed, it removes what it wrote (and
    replay/ itself when it made it): the previous replay stays as it was.
    """
    from tune_jobs.replay.compare import compare
    from tune_jobs.replay.plot import plot_regret

    table, directory = prepared.table, prepared.directory
    lookup = CurveLookup(table, prepared.fill)
    runs, document = compare(
        table,
        lookup,
        prepared.strategies,
        prepared.seeds,
        prepared.workers,
        prepared.trials,
        throughput_flops_per_s=prepared.throughput_flops_per_s,
    )
    document["experiment"] = prepared.experiment.root
    document["recorded"] = {
        "trials": table.manifest["curves"],
        "configs": table.manifest["configs"],
        **experiment_cost(read_trials(prepared.experiment)),
    }
    document["fill_error"] = held_out_error(table, lookup.fill)
    document["warning"] = extrapolation_warning(document)
    document["plot"] = str(directory / PLOT_FILE)
    made = not directory.exists()
    directory.mkdir(exist_ok=True)
    _remove_leftovers(directory)
    staging = directory / f"{STAGING_PREFIX}{secrets.token_hex(4)}"
    try:
        staging.mkdir()
        write_table(table, staging / TABLE_DIR)
        for strategy_runs in runs:
            spec = strategy_spec(table, strategy_runs.strategy, 0, prepared.trials)
            search = strategy_runs.searches[0]
            write_simulated_experiment(
                search.trials,
                search.evaluations,
                # The storage it will have once in place, not the staging directory's.
                spec.model_copy(update={"name": strategy_runs.strategy.slug, "storage": str(directory / SEARCHES_DIR)}),
                staging / SEARCHES_DIR / strategy_runs.strategy.slug,
                {
                    "replayed_from": prepared.experiment.root,
                    "strategy": strategy_runs.strategy.label,
                    "seed": 0,
                    "fill": prepared.fill,
                    "extrapolated_share": search.extrapolated_share,
                },
            )
        title = f"replay of {prepared.experiment.name}: {prepared.workers} workers, {prepared.seeds} seeds"
        plot_regret(runs, document["target"], table.mode, table.metric, title, staging / PLOT_FILE)
        (staging / JSON_FILE).write_text(strict_json.dumps(document, indent=2) + "\n", encoding="utf-8")
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        if made:
            directory.rmdir()
        raise
    return StagedReplay(directory, staging, document)


def publish_replay(staged: StagedReplay) -> None:
    """Put the staged replay in place of the previous one: replay/ then holds exactly the new replay.

    A few renames inside replay/ (the previous entries into a hidden ``.previous-*``, the new ones in), then
    the previous entries are removed. Run it under :func:`textune.signals.deferred_signals`, so Ctrl-C does
    not stop it between two renames.
    """
    directory = staged.directory
    previous = directory / f"{PREVIOUS_PREFIX}{staged.staging.name.removeprefix(STAGING_PREFIX)}"
    previous.mkdir()
    for entry in directory.iterdir():
        if not entry.name.startswith("."):  # a user's hidden files stay; so do staging and previous
            entry.rename(previous / entry.name)
    for entry in staged.staging.iterdir():
        entry.rename(directory / entry.name)
    staged.staging.rmdir()
    shutil.rmtree(previous)


def _refuse_unused_asha_options(options: ReplayOptions, strategies: list[Strategy]) -> None:
    """Refuse ASHA's grace periods or reduction factors when no strategy replayed uses ASHA: they would be
    ignored without a word."""
    given = " and ".join(
        option
        for option, values in (
            ("--grace-period-tokens", options.grace_period_tokens),
            ("--reduction-factor", options.reduction_factors),
        )
        if values
    )
    if not given or any(strategy.scheduler == "asha" for strategy in strategies):
        return
    names = ", ".join(strategy.label for strategy in strategies)
    raise TextuneError(
        f"{given} set{'' if ' and ' in given else 's'} ASHA's rungs, but every strategy replayed ({names}) uses "
        f"FIFO, which stops no trial early: {given} would be ignored.",
        f"Add an ASHA strategy (e.g. --strategy {strategies[0].algorithm}+asha), or leave out {given}.",
    )


def _remove_leftovers(directory: Path) -> None:
    """Remove the staging and previous directories a killed replay left in replay/."""
    for entry in directory.iterdir():
        if entry.name.startswith((STAGING_PREFIX, PREVIOUS_PREFIX)) and entry.is_dir():
            shutil.rmtree(entry)


def _refuse_trained_inside(directory: Path) -> None:
    """Refuse to replace a replay whose searches hold a trained experiment (textune confirm of a simulated
    search writes one at searches/SLUG/confirm/): a new replay replaces replay/ whole, and its checkpoints
    cost training to make again."""
    searches = directory / SEARCHES_DIR
    trained = sorted(
        str(inner)
        for inner in (searches.glob("*/*") if searches.is_dir() else [])
        if (inner / SPEC_FILE).is_file() and not (inner / SIMULATED_FILE).exists()
    )
    if trained:
        raise TextuneError(
            f"{', '.join(trained)} holds a trained search (checkpoints made by textune confirm or run), and a new "
            f"replay replaces {directory} whole, the searches of the previous replay included.",
            f"Move {'them' if len(trained) > 1 else 'it'} out of {directory} first (e.g. mv {trained[0]} "
            f"{directory.parent}/), then replay again.",
        )


def read_replay(experiment: Experiment) -> tuple[dict[str, Any], bytes | None] | None:
    """The comparison ``textune replay`` wrote (``replay/replay.json``) and its plot (None when missing), or None
    when no replay has run. Raises TextuneError for a replay.json that is not a JSON object."""
    filesystem, root = experiment.filesystem()
    where = f"{experiment.root}/{REPLAY_DIR}/{JSON_FILE}"
    try:
        with filesystem.open_input_stream(f"{root}/{REPLAY_DIR}/{JSON_FILE}") as handle:
            document = json.loads(handle.read().decode("utf-8"))
    except FileNotFoundError:
        return None
    except ValueError as exc:  # undecodable bytes or JSON textune does not write
        raise TextuneError(
            f"{where} is not a textune replay document ({exc}).",
            f"Delete {experiment.root}/{REPLAY_DIR} and run textune replay again.",
        ) from exc
    if not isinstance(document, dict) or not isinstance(document.get("strategies"), list):
        raise TextuneError(
            f"{where} is not a textune replay document (it holds no list of strategies).",
            f"Delete {experiment.root}/{REPLAY_DIR} and run textune replay again.",
        )
    try:
        with filesystem.open_input_stream(f"{root}/{REPLAY_DIR}/{PLOT_FILE}") as handle:
            plot: bytes | None = handle.read()
    except FileNotFoundError:
        plot = None
    return document, plot


def extrapolation_warning(document: dict[str, Any]) -> str | None:
    """One sentence naming every strategy whose replay was mostly extrapolated (the table does not cover the
    space it searched), each with its extrapolated share; None when none is above WARN_EXTRAPOLATED_SHARE."""
    above = [s for s in document["strategies"] if s["extrapolated_share"] > WARN_EXTRAPOLATED_SHARE]
    if not above:
        return None
    shares = ", ".join(f"{100 * s['extrapolated_share']:.0f}% of {s['strategy']}'s" for s in above)
    return (
        f"{shares} evaluations were not recorded and came from the {document['fill']} fill (over "
        f"{100 * WARN_EXTRAPOLATED_SHARE:.0f}%): the recorded curves do not cover the space "
        f"{'these strategies' if len(above) > 1 else 'it'} searched, so {'their' if len(above) > 1 else 'its'} "
        "numbers say more about the fill than about the recording."
    )


def write_simulated_experiment(
    trials: Any, evaluations: Any, spec: Any, directory: Path, simulation: dict[str, Any]
) -> Path:
    """A simulated search as an experiment directory that ``textune best``, ``analyze`` and ``report`` read.

    ``simulation`` (what it replayed) goes into its marker (tune_jobs.experiment.SIMULATED_FILE), written before
    the spec that makes the directory an experiment: no command ever takes it for a trained search.
    """
    directory.mkdir(parents=True, exist_ok=True)
    (directory / SIMULATED_FILE).write_text(strict_json.dumps(simulation, indent=2) + "\n", encoding="utf-8")
    (directory / SPEC_FILE).write_text(dump_yaml(spec.model_dump(mode="json", exclude_none=True)), encoding="utf-8")
    write_tables(
        ExperimentResults(trials, evaluations),
        str(directory / RESULTS_FILE),
        str(directory / EVALUATIONS_FILE),
        pyarrow.fs.LocalFileSystem(),
    )
    return directory


def describe(document: dict[str, Any]) -> str:
    """The comparison as a table for the terminal."""
    from tune_jobs.replay.compare import format_ci

    error = document["fill_error"]
    lines = [
        f"replay of {document['experiment']}: {document['recorded']['trials']} recorded curves; target "
        f"{document['metric']} {document['target']:.4f} (the experiment's best), {document['workers']} "
        f"workers, {document['seeds']} paired seeds, {document['trials']} trials each",
        f"the experiment itself: {document['recorded']['tokens']:,} tokens, "
        f"{document['recorded']['device_hours']:.4f} device-hours ({document['device_kind']})",
        f"fill for unrecorded evaluations: {document['fill']} (held-out error {error['scheme']}: MAE "
        f"{error['mae']:.3f}, RMSE {error['rmse']:.3f} {document['metric']})",
        "evaluation time: "
        + (
            "the recorded wall seconds"
            if document["throughput_flops_per_s"] is None
            else f"the recorded FLOPs at {document['throughput_flops_per_s']:.3g} FLOP/s per trial (--throughput)"
        ),
        "",
        f"{'strategy':<40} {'regret IQM [95% CI]':<26} {'reached':>7} {'tokens to best±1% IQM [CI]':<30} "
        f"{'device-h to ±1%':<16} {'extrap.':>7}",
    ]
    for s in document["strategies"]:
        one = s["within_0.01"]
        lines.append(
            f"{s['strategy']:<40} {format_ci(s['regret'], '.4f'):<26} {100 * one['reached_share']:6.0f}% "
            f"{format_ci(one['tokens'], ',.0f'):<30} {_fmt(one['device_hours']['iqm'], '.4f'):<16} "
            f"{100 * s['extrapolated_share']:6.0f}%"
        )
    return "\n".join(lines)


def _fmt(value: float | None, spec: str) -> str:
    return "never" if value is None else format(value, spec)
