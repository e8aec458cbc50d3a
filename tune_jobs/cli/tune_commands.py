"""``textune run | resume | best | export | tensorboard``: searches and their results."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from textune.errors import TextuneError

if TYPE_CHECKING:
    from tune_jobs.experiment import Experiment
    from tune_jobs.spec import JobSpec

ADDRESS_HELP = ("Ray cluster to run on: auto, HOST:PORT or ray://HOST:10001. Without it an embedded local Ray "
                "(127.0.0.1 only) runs the search.")


def _finish_and_report(experiment: "Experiment", spec: "JobSpec") -> None:
    """Write the experiment's results and print the best trial, a sample and the TensorBoard command."""
    from ray import tune

    from tune_jobs.experiment import BEST_DIR
    from tune_jobs.finish import best_summary, finish_experiment, sample_from

    results = finish_experiment(experiment, spec)
    counts = results.trials["status"].value_counts().to_dict() if not results.trials.empty else {}
    click.echo("\ntrials: " + ", ".join(f"{n} {status}" for status, n in sorted(counts.items())))
    if counts and results.trials["best_metric"].map(math.isfinite).any():
        summary = best_summary(results.trials, spec)
        click.echo(_describe_best(summary))
        filesystem, root = experiment.filesystem()
        with tune.Checkpoint(f"{root}/{BEST_DIR}", filesystem).as_directory() as best_dir:
            click.echo("sample from the best checkpoint:\n" + sample_from(Path(best_dir), spec.seed))
        click.echo(f"\nresults: {experiment.root}/results.parquet; best checkpoint: {experiment.root}/{BEST_DIR}")
    else:
        click.echo("no trial reported a finite metric, so there is no best trial.")
        click.echo(f"\nresults: {experiment.root}/results.parquet")
    click.echo(f"TensorBoard: textune tensorboard {experiment.root}")
    # Trials the searcher had not created yet when the run stopped (Ctrl-C, time budget) count as unfinished.
    unfinished = counts.get("unfinished", 0) + max(0, spec.expected_trials - len(results.trials))
    if unfinished:
        click.echo(f"{unfinished} trial(s) unfinished; continue with: textune resume {experiment.root}")


def _describe_best(summary: dict[str, object]) -> str:
    config = ", ".join(f"{key}={_short(value)}" for key, value in summary["config"].items())  # type: ignore[union-attr]
    line = (f"best trial {summary['trial_id']} ({summary['status']}, {summary['tokens']:,} tokens): "
            f"val_bpc {summary['best_val_bpc']:.4f}, val_ppl {summary['best_val_ppl']:.3f}")
    if "gap_to_floor" in summary:
        line += (f", {summary['gap_to_floor']:+.4f} bpc above the entropy floor {summary['floor_bpc']:.4f} "
                 f"({100 * summary['gap_to_floor_rel']:.1f}%)")  # type: ignore[operator]
    cost, total = summary["cost"], summary["experiment_cost"]
    return (f"{line}\n  config: {config}\n  cost: {_describe_cost(cost)}; "  # type: ignore[arg-type]
            f"experiment ({total['trials']} trials): {_describe_cost(total)}")  # type: ignore[index]


def _describe_cost(cost: dict[str, object]) -> str:
    from tune_jobs.cost import UNIT_NAMES

    return (f"{cost['tokens']:,} tokens, {cost['flops']:.3g} FLOPs, {cost['wall_time_s']:.1f} s wall, "
            f"{cost['device_hours']:.4g} {UNIT_NAMES[cost['device_kind']]}")  # type: ignore[index]


def _short(value: object) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


@click.command("run")
@click.argument("job_path", metavar="JOB.yaml", type=click.Path(path_type=Path))
@click.option("--address", default=None, help=ADDRESS_HELP)
@click.option("--name", default=None, help="Experiment name (overrides the spec's name:).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a spec key (repeatable), e.g. --set num_samples=4 --set budget.max_tokens=100000.")
@click.option("--resume", is_flag=True,
              help="If the experiment already exists, continue it (with the spec it was started with) instead of "
                   "refusing.")
def run(job_path: Path, address: str | None, name: str | None, overrides: tuple[str, ...], resume: bool) -> None:
    """Run the search JOB.yaml describes (every key: docs/job-spec.md)."""
    from tune_jobs.experiment import experiment_at
    from tune_jobs.spec import load_spec

    spec = load_spec(job_path, list(overrides), name)
    experiment = experiment_at(spec.storage, spec.name)
    # Ray Tune takes seconds to import: a bad spec is reported before it is.
    from tune_jobs.runner import resume_job, run_job

    if resume and experiment.exists():
        spec = resume_job(experiment, address)
    else:
        run_job(spec, address)
    _finish_and_report(experiment, spec)


@click.command("resume")
@click.argument("experiment_dir", metavar="EXPERIMENT")
@click.option("--address", default=None, help=ADDRESS_HELP)
def resume(experiment_dir: str, address: str | None) -> None:
    """Continue EXPERIMENT: its unfinished and errored trials, with the searcher's and scheduler's state."""
    from tune_jobs.experiment import open_experiment

    experiment = open_experiment(experiment_dir)
    from tune_jobs.runner import resume_job  # after the cheap check, as in run

    spec = resume_job(experiment, address)
    _finish_and_report(experiment, spec)


@click.command("best")
@click.argument("experiment_dir", metavar="EXPERIMENT")
@click.option("--json", "as_json", is_flag=True, help="Print the best trial as JSON.")
def best(experiment_dir: str, as_json: bool) -> None:
    """Print the best trial of EXPERIMENT: its config, metric, tokens and checkpoint."""
    from tune_jobs.experiment import open_experiment
    from tune_jobs.finish import best_summary
    from tune_jobs.results import read_trials
    from tune_jobs.spec import load_saved_spec

    experiment = open_experiment(experiment_dir)
    spec = load_saved_spec(experiment)
    summary = best_summary(read_trials(experiment), spec)
    click.echo(json.dumps(summary, indent=2) if as_json else _describe_best(summary))


@click.command("export")
@click.argument("experiment_dir", metavar="EXPERIMENT")
@click.option("--out", "out_path", required=True, type=click.Path(path_type=Path),
              help="Parquet file for the per-trial table; the evaluations go beside it as NAME.evaluations.parquet.")
@click.option("--force", is_flag=True, help="Replace --out (and its evaluations file) if they exist.")
def export(experiment_dir: str, out_path: Path, force: bool) -> None:
    """Export EXPERIMENT's results: a row per trial and a row per evaluation, as Parquet."""
    import pyarrow.fs

    from tune_jobs.experiment import open_experiment
    from tune_jobs.results import collect, write_tables
    from tune_jobs.spec import load_saved_spec

    evaluations_path = out_path.with_suffix(".evaluations.parquet")
    existing = [str(p) for p in (out_path, evaluations_path) if p.exists()]
    if existing and not force:
        raise TextuneError(f"{' and '.join(existing)} already exist{'s' if len(existing) == 1 else ''}; export "
                           "does not overwrite files.",
                           "Choose another --out, or add --force to replace them.")
    experiment = open_experiment(experiment_dir)
    results = collect(experiment, load_saved_spec(experiment))
    out_path.parent.mkdir(parents=True, exist_ok=True)
    write_tables(results, str(out_path.resolve()), str(evaluations_path.resolve()), pyarrow.fs.LocalFileSystem())
    click.echo(f"{len(results.trials)} trials -> {out_path}; {len(results.evaluations)} evaluations -> "
               f"{evaluations_path}")


@click.command("tensorboard")
@click.argument("experiment_dir", metavar="EXPERIMENT")
@click.option("--port", type=click.IntRange(0, 65535), default=6006, show_default=True)
def tensorboard(experiment_dir: str, port: int) -> None:
    """Serve TensorBoard on 127.0.0.1 for EXPERIMENT: every trial's curves and the HParams table."""
    from tune_jobs.experiment import open_experiment

    logdir = open_experiment(experiment_dir).local_path()
    click.echo(f"TensorBoard for {logdir} at http://127.0.0.1:{port}/ (Ctrl-C stops it)", err=True)
    command = [sys.executable, "-m", "tensorboard.main", "--logdir", str(logdir), "--host", "127.0.0.1",
               "--port", str(port)]
    try:
        raise click.exceptions.Exit(subprocess.call(command))
    except KeyboardInterrupt:
        raise click.exceptions.Exit(0) from None
