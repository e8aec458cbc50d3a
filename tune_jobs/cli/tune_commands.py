"""``textune run | resume | best | export | tensorboard``: searches and their results."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from textune import strict_json
from textune.errors import TextuneError
from tune_jobs.cli.params import LocalPath, gcs_address_option

if TYPE_CHECKING:
    import pandas as pd

    from tune_jobs.experiment import Experiment
    from tune_jobs.results.table import ExperimentResults
    from tune_jobs.spec import JobSpec

RUN_ADDRESS_OPTION = gcs_address_option("Without it, an embedded local Ray (127.0.0.1 only) runs the search.")


class _Finish:
    """The finish a run or resume calls while it holds the experiment; remembers whether a trial reported a
    finite metric, for the exit status (:meth:`exit_if_no_best`)."""

    def __init__(self) -> None:
        self.found_best = True

    def __call__(self, experiment: Experiment, spec: JobSpec) -> None:
        self.found_best = _finish_and_report(experiment, spec)

    def exit_if_no_best(self) -> None:
        """Exit 1 when every trial errored or none reported a finite metric: a script must not take it for a
        success. Called after the results are written and the experiment is released."""
        if not self.found_best:
            raise click.exceptions.Exit(1)


def _finish_and_report(experiment: Experiment, spec: JobSpec) -> bool:
    """Write the experiment's results and print the best trial, a sample and the TensorBoard command; whether
    there is a best trial (one reported a finite metric)."""
    from ray import tune

    from models.status import TrialStatus
    from tune_jobs.experiment import BEST_DIR
    from tune_jobs.finish import best_summary, finish_experiment, sample_from
    from tune_jobs.lifecycle import unfinished_trials

    results = finish_experiment(experiment, spec)
    counts = results.trials["status"].value_counts().to_dict() if not results.trials.empty else {}
    click.echo("\ntrials: " + ", ".join(f"{n} {status}" for status, n in sorted(counts.items())))
    found_best = bool(counts) and bool(results.trials["best_metric"].map(math.isfinite).any())
    if found_best:
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
    left = unfinished_trials(results.trials, spec)
    if left:
        # The summary line above counts the recorded trials only; say how the rest were never started.
        recorded = counts.get(TrialStatus.UNFINISHED.value, 0)
        what = (
            f"{left} trial(s) unfinished"
            if recorded == left
            else (f"{left} trial(s) left to run ({recorded} unfinished, {left - recorded} not started yet)")
        )
        click.echo(f"{what}; continue with: textune resume {experiment.root}")
    return found_best


def _describe_best(summary: dict[str, Any]) -> str:
    config = ", ".join(f"{key}={_short(value)}" for key, value in summary["config"].items())
    line = (
        f"best trial {summary['trial_id']} ({summary['status']}, {summary['tokens']:,} tokens): "
        f"val_bpc {summary['best_val_bpc']:.4f}"
    )
    if math.isfinite(summary["best_val_ppl"]):  # a simulated search replays val_bpc only
        line += f", val_ppl {summary['best_val_ppl']:.3f}"
    if "gap_to_floor" in summary:
        line += (
            f", {summary['gap_to_floor']:+.4f} bpc above the entropy floor {summary['floor_bpc']:.4f} "
            f"({100 * summary['gap_to_floor_rel']:.1f}%)"
        )
    cost, total = summary["cost"], summary["experiment_cost"]
    return (
        f"{line}\n  config: {config}\n  cost: {_describe_cost(cost)}; "
        f"experiment ({total['trials']} trials): {_describe_cost(total)}"
    )


def _describe_cost(cost: dict[str, Any]) -> str:
    from tune_jobs.cost import UNIT_NAMES

    return (
        f"{cost['tokens']:,} tokens, {cost['flops']:.3g} FLOPs, {cost['wall_time_s']:.1f} s wall, "
        f"{cost['device_hours']:.4g} {UNIT_NAMES[cost['device_kind']]}"
    )


def _short(value: object) -> str:
    if value is None:
        return "null"  # as the spec writes it
    return f"{value:.4g}" if isinstance(value, float) else str(value)


@click.command("run")
@click.argument("job_path", metavar="JOB.yaml", type=LocalPath("file", must_exist=True))
@RUN_ADDRESS_OPTION
@click.option("--name", default=None, help="Experiment name (overrides the spec's name:).")
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override a spec key (repeatable), e.g. --set num_samples=4 --set budget.max_tokens=100000.",
)
@click.option(
    "--resume",
    is_flag=True,
    help="If the experiment already exists, continue it instead of refusing. The spec must equal the one "
    "it was started with (a differing key is refused); a finished one has nothing to resume.",
)
def run_command(
    job_path: Path, address: str | None, name: str | None, overrides: tuple[str, ...], resume: bool
) -> None:
    """Run the search JOB.yaml describes (every key: docs/job-spec.md). Exits 1 when no trial reported a finite
    metric (all errored, say), after writing the results."""
    from tune_jobs.experiment import experiment_at
    from tune_jobs.spec import load_spec

    spec = load_spec(job_path, list(overrides), name)
    experiment = experiment_at(spec.storage, spec.name, spec.storage_options)
    if resume and experiment.exists():
        _resume(experiment, address, given=spec)
    else:
        # Ray Tune takes seconds to import: a bad spec is reported before it is.
        from tune_jobs.runner import run_job

        finish = _Finish()
        run_job(spec, address, then=finish)
        finish.exit_if_no_best()


@click.command("resume")
@click.argument("experiment_dir", metavar="EXPERIMENT")
@RUN_ADDRESS_OPTION
def resume_command(experiment_dir: str, address: str | None) -> None:
    """Continue EXPERIMENT: its unfinished and errored trials, with the searcher's and scheduler's state."""
    from tune_jobs.experiment import open_experiment

    _resume(open_experiment(experiment_dir), address)


def _resume(experiment: Experiment, address: str | None, given: JobSpec | None = None) -> None:
    """Resume and finish ``experiment`` (exit 1 when no trial reported a finite metric), or say in a second that
    every trial has ended."""
    from cluster.connection import resolve_address
    from tune_jobs.lifecycle import NothingToResume, resumable_spec

    try:
        # The checks that need no Ray, before Ray Tune's seconds of import; the resume repeats them once it
        # holds the experiment.
        resolve_address(address)
        resumable_spec(experiment, given)
        from tune_jobs.runner import resume_job

        finish = _Finish()
        resume_job(experiment, address, then=finish, given=given)
    except NothingToResume as ended:
        click.echo(f"nothing to resume: {ended}. The results: textune best {experiment.root}")
        return
    finish.exit_if_no_best()


@click.command("best")
@click.argument("experiment_dir", metavar="EXPERIMENT")
@click.option("--json", "as_json", is_flag=True, help="Print the best trial as JSON.")
def best_command(experiment_dir: str, as_json: bool) -> None:
    """Print the best trial of EXPERIMENT: its config, metric, tokens and checkpoint (a simulated search, which
    textune replay writes, has no checkpoint: it says so and how to train the config)."""
    from tune_jobs.experiment import open_experiment
    from tune_jobs.finish import best_summary
    from tune_jobs.lifecycle import require_ended
    from tune_jobs.results.parquet import read_trials
    from tune_jobs.spec import load_saved_spec

    experiment = open_experiment(experiment_dir)
    require_ended(experiment, "ask for its best trial")
    spec = load_saved_spec(experiment)
    trials = read_trials(experiment)
    summary = best_summary(trials, spec)
    summary["simulated"] = experiment.simulation()
    if as_json:
        click.echo(strict_json.dumps(summary, indent=2))
        return
    click.echo(_describe_best(summary))
    click.echo(_describe_checkpoint(experiment, trials, summary))


def _describe_checkpoint(experiment: Experiment, trials: pd.DataFrame, summary: dict[str, Any]) -> str:
    """Where the best trial's checkpoint is and what best/ holds; for a simulated search, that there is none."""
    from tune_jobs.experiment import BEST_DIR, describe_simulation
    from tune_jobs.results.table import best_with_checkpoint

    if summary["simulated"] is not None:
        return (
            f"  simulated search ({describe_simulation(summary['simulated'])}): no model was trained, so there is "
            f"no checkpoint and no {BEST_DIR}/. Train this config for real with: textune confirm {experiment.root} "
            "--top-k 1 --seeds 1"
        )
    kept = best_with_checkpoint(trials)  # what best/ copies: the best trial that kept a checkpoint
    if kept is None:
        return f"  checkpoint: (none recorded); no trial kept one, so there is no {BEST_DIR}/"
    best = f"{experiment.root}/{BEST_DIR}"
    if kept["trial_id"] != summary["trial_id"]:
        return (
            f"  checkpoint: (none recorded); {best} holds trial {kept['trial_id']}'s, the best that kept one "
            f"(textune generate {experiment.root} uses it)"
        )
    return f"  checkpoint: {summary['checkpoint']}; copied to {best} (textune generate {experiment.root} uses it)"


@click.command("export")
@click.argument("experiment_dir", metavar="EXPERIMENT")
@click.option(
    "--out",
    "out_path",
    required=True,
    type=LocalPath("file"),
    help="Parquet file for the per-trial table; the evaluations go beside it as NAME.evaluations.parquet.",
)
@click.option("--force", is_flag=True, help="Replace --out (and its evaluations file) if they exist.")
def export_command(experiment_dir: str, out_path: Path, force: bool) -> None:
    """Export EXPERIMENT's results: a row per trial and a row per evaluation, as Parquet.

    Both files appear whole or not at all: they are written beside their targets and renamed into place.
    """
    from tune_jobs.experiment import open_experiment
    from tune_jobs.lifecycle import is_live
    from tune_jobs.results.collect import collect
    from tune_jobs.results.parquet import read_evaluations, read_trials
    from tune_jobs.results.table import ExperimentResults
    from tune_jobs.spec import load_saved_spec

    if out_path.suffix != ".parquet":
        # A results.csv holding Parquet would fail in every CSV reader the user opens it with.
        raise TextuneError(
            f"--out {out_path} names a {out_path.suffix or 'suffix-less'} file, but export writes Parquet.",
            f"Use --out {out_path.with_suffix('.parquet')} (pandas.read_parquet(...).to_csv(...) makes a CSV).",
        )
    evaluations_path = LocalPath("file").convert(out_path.with_suffix(".evaluations.parquet"), None, None)
    existing = [str(p) for p in (out_path, evaluations_path) if p.exists()]
    if existing and not force:
        raise TextuneError(
            f"{' and '.join(existing)} already exist{'s' if len(existing) == 1 else ''}; export "
            "does not overwrite files.",
            "Choose another --out, or add --force to replace them.",
        )
    experiment = open_experiment(experiment_dir)
    if is_live(experiment):  # Ray Tune's records are readable mid-run; they are just not the last word
        click.echo(
            f"warning: {experiment.root} is being run right now: this export holds its trials as far as they "
            "have got; export again when the run has ended.",
            err=True,
        )
    if experiment.simulation() is not None:  # no Ray Tune records to collect: its tables are all there is
        results = ExperimentResults(read_trials(experiment), read_evaluations(experiment))
    else:
        results = collect(experiment, load_saved_spec(experiment))
    _write_export(results, out_path, evaluations_path)
    click.echo(
        f"{len(results.trials)} trials -> {out_path}; {len(results.evaluations)} evaluations -> {evaluations_path}"
    )


def _write_export(results: ExperimentResults, out_path: Path, evaluations_path: Path) -> None:
    """Write both tables to staging files and rename them over the targets; on any error remove what was
    written (staging files, directories made for --out) and keep the old targets."""
    import os
    import shutil
    import uuid

    import pyarrow.fs

    from textune.paths import outermost_missing
    from tune_jobs.results.parquet import write_tables

    created = outermost_missing(out_path.parent)
    targets = (out_path, evaluations_path)
    staged = [target.with_name(f".{target.name}.partial-{uuid.uuid4().hex[:8]}") for target in targets]
    try:
        out_path.parent.mkdir(parents=True, exist_ok=True)
        write_tables(results, str(staged[0]), str(staged[1]), pyarrow.fs.LocalFileSystem())
        for staging, target in zip(staged, targets, strict=True):
            os.replace(staging, target)
    except OSError as exc:
        for staging in staged:
            staging.unlink(missing_ok=True)
        if created is not None:
            shutil.rmtree(created, ignore_errors=True)
        raise TextuneError(
            f"--out {out_path} cannot be written: {exc.strerror or exc}.",
            "Choose a --out in a directory this user can write.",
        ) from exc


@click.command("tensorboard")
@click.argument("experiment_dir", metavar="EXPERIMENT")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=6006,
    show_default=True,
    help="Port on 127.0.0.1; 0 picks a free one.",
)
def tensorboard_command(experiment_dir: str, port: int) -> None:
    """Serve TensorBoard on 127.0.0.1 for EXPERIMENT: every trial's curves and the HParams table.

    A port in use is refused (exit 2). Stopping this command (Ctrl-C, or SIGTERM / SIGHUP to its pid) stops
    the TensorBoard server with it; TensorBoard's own failures pass on its exit status.
    """
    from tune_jobs.experiment import open_experiment, require_trained

    experiment = open_experiment(experiment_dir)
    require_trained(experiment, "TensorBoard files (textune report draws its curves)")
    logdir = experiment.local_path()
    port = _free_port(port)
    click.echo(f"TensorBoard for {logdir} at http://127.0.0.1:{port}/ (Ctrl-C stops it)", err=True)
    command = [
        sys.executable,
        "-m",
        "tensorboard.main",
        "--logdir",
        str(logdir),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    raise click.exceptions.Exit(_serve_until_stopped(command))


def _free_port(port: int) -> int:
    """``port`` if 127.0.0.1 can bind it, else a TextuneError; for 0, a free port the kernel picks (chosen here,
    so the address printed is the one TensorBoard serves)."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError as exc:
            raise TextuneError(
                f"--port {port}: 127.0.0.1:{port} is in use ({exc.strerror}).",
                "Choose another --port (0 picks a free one), or stop what serves there.",
            ) from exc
        return int(probe.getsockname()[1])


class _Stopped(Exception):
    """This command was asked to stop by a signal."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _serve_until_stopped(command: list[str]) -> int:
    """Run the server ``command`` until it ends or this process is stopped; never leave it running.

    Returns its exit status; 0 after Ctrl-C; 128 + the signal's number after SIGTERM or SIGHUP.
    """
    import signal

    def stop(signum: int, _frame: object) -> None:
        raise _Stopped(signum)

    # Linux: the kernel sends the server SIGTERM if this process dies without cleaning up (SIGKILL).
    server = subprocess.Popen(command, preexec_fn=_die_with_parent if sys.platform == "linux" else None)
    # A signal the caller ignores (nohup's SIGHUP) stays ignored.
    previous = {
        sig: signal.signal(sig, stop)
        for sig in (signal.SIGTERM, signal.SIGHUP)
        if signal.getsignal(sig) is not signal.SIG_IGN
    }
    try:
        return server.wait()
    except KeyboardInterrupt:
        return 0
    except _Stopped as stopped:
        return 128 + stopped.signum
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if server.poll() is None:
            server.terminate()
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()


def _die_with_parent() -> None:
    import ctypes
    import signal

    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)
