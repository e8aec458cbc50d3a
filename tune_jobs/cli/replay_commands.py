"""``textune replay``: would another strategy have found this experiment's best more cheaply?"""

from __future__ import annotations

import click

from textune import strict_json


@click.command("replay")
@click.argument("experiment_dir", metavar="EXPERIMENT")
@click.option(
    "--strategy",
    "strategies",
    multiple=True,
    help="ALGORITHM+SCHEDULER to replay, e.g. random+asha (repeatable; default: random+fifo, grid+fifo "
    "when the recorded values cross to no more grid points than trials, random+asha, hyperopt+fifo, "
    "hyperopt+asha).",
)
@click.option(
    "--workers",
    type=int,
    default=None,
    help="Simulated workers (default: the experiment's max_concurrent_trials, else 1).",
)
@click.option("--seeds", type=int, default=10, show_default=True, help="Paired seeds per strategy.")
@click.option("--trials", type=int, default=None, help="Trials per replayed search (default: the experiment's).")
@click.option(
    "--grace-period-tokens",
    "grace_period_tokens",
    type=int,
    multiple=True,
    help="ASHA's first rung to replay (repeatable; default: the experiment's).",
)
@click.option(
    "--reduction-factor",
    "reduction_factors",
    type=float,
    multiple=True,
    help="ASHA's reduction factor to replay (repeatable; default: the experiment's).",
)
@click.option(
    "--fill",
    type=str,
    default="surrogate",
    show_default=True,
    help="How evaluations the experiment never recorded are filled: nearest or surrogate.",
)
@click.option(
    "--throughput",
    "throughput_flops_per_s",
    type=float,
    default=None,
    help="FLOPs per second of one trial's devices: each evaluation then takes its recorded FLOPs over "
    "this, not its recorded wall seconds (a replay for another device; default: wall seconds).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the comparison as JSON instead of a table.")
def replay_command(
    experiment_dir: str,
    strategies: tuple[str, ...],
    workers: int | None,
    seeds: int,
    trials: int | None,
    grace_period_tokens: tuple[int, ...],
    reduction_factors: tuple[float, ...],
    fill: str,
    throughput_flops_per_s: float | None,
    as_json: bool,
) -> None:
    """Replay other search strategies and ASHA settings against EXPERIMENT's own learning curves on a simulated
    clock (docs/replay.md): what each would have cost, in tokens and device-hours, to reach the experiment's
    best, with bootstrap 95% CIs over paired seeds, and how much of each replay was extrapolated. Writes only
    EXPERIMENT/replay/ (the curve table, replay.json, replay.png, a simulated experiment per strategy)."""
    from tune_jobs.experiment import open_experiment
    from tune_jobs.replay.experiment_replay import describe, prepare_replay, run_replay

    options = {
        "strategies": list(strategies),
        "workers": workers,
        "seeds": seeds,
        "trials": trials,
        "grace_period_tokens": list(grace_period_tokens),
        "reduction_factors": list(reduction_factors),
        "fill": fill,
        "throughput_flops_per_s": throughput_flops_per_s,
    }
    prepared = prepare_replay(open_experiment(experiment_dir), {k: v for k, v in options.items() if v is not None})
    document = run_replay(prepared)
    click.echo(strict_json.dumps(document, indent=2) if as_json else describe(document))
    if document["warning"]:
        click.echo(f"warning: {document['warning']}", err=True)
    if not as_json:
        click.echo(f"\nwritten: {prepared.directory}")
