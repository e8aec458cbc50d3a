"""``textune replay``: would another strategy have found this experiment's best more cheaply?"""

from __future__ import annotations

import click

from textune import strict_json

# The ReplayOptions key each option sets: a refused value is named by its option.
_FLAGS = {
    "strategies": "--strategy",
    "workers": "--workers",
    "seeds": "--seeds",
    "trials": "--trials",
    "grace_period_tokens": "--grace-period-tokens",
    "reduction_factors": "--reduction-factor",
    "fill": "--fill",
    "throughput_flops_per_s": "--throughput",
}


class _StrategyOption(click.Option):
    """--strategy, whose help lists the strategies from their one source (tune_jobs.replay.strategies), read
    only when the help is shown: `textune --help` imports this module, and the list needs pandas."""

    def get_help_record(self, ctx: click.Context) -> tuple[str, str] | None:
        from tune_jobs.replay.strategies import DEFAULT_STRATEGIES, STRATEGIES

        self.help = (
            f"ALGORITHM+SCHEDULER to replay (repeatable): {', '.join(STRATEGIES)}. Default: "
            f"{', '.join(DEFAULT_STRATEGIES)} (grid+fifo only when the recorded values cross to no more grid "
            "points than trials)."
        )
        return super().get_help_record(ctx)


@click.command("replay")
@click.argument("experiment_dir", metavar="EXPERIMENT")
@click.option("--strategy", "strategies", multiple=True, cls=_StrategyOption)
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
    EXPERIMENT/replay/ (the curve table, replay.json, replay.png, a simulated experiment per strategy), whole:
    it replaces the previous replay there, and Ctrl-C before the end leaves that one as it was."""
    from textune.config import validate
    from textune.signals import deferred_signals, ignore_signals_at_exit
    from tune_jobs.experiment import open_experiment
    from tune_jobs.lifecycle import require_ended
    from tune_jobs.replay.experiment_replay import (
        ReplayOptions,
        describe,
        prepare_replay,
        publish_replay,
        stage_replay,
    )

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
    given = {key: value for key, value in options.items() if value is not None}
    # Checked here, where each value's option is known, so a refusal names it; prepare_replay checks the same
    # model again for its other callers (the benchmark), in config words.
    validate(ReplayOptions, given, "textune replay", _FLAGS)
    experiment = open_experiment(experiment_dir)
    require_ended(experiment, "replay it")
    prepared = prepare_replay(experiment, given)
    staged = stage_replay(prepared)  # Ctrl-C until here: "aborted.", the previous replay/ as it was
    # From the first rename until everything is printed, a signal waits: what is printed is then what is there.
    with deferred_signals(deliver=False) as received:
        publish_replay(staged)
        ignore_signals_at_exit()  # the printout below is the last word: no 130 after it
        document = staged.document
        click.echo(strict_json.dumps(document, indent=2) if as_json else describe(document))
        if document["warning"]:
            click.echo(f"warning: {document['warning']}", err=True)
        if not as_json:
            click.echo(f"\nwritten: {prepared.directory}")
    if received:
        click.echo(f"interrupted after the new replay was in place: {prepared.directory} holds it whole.", err=True)
        raise click.exceptions.Exit(128 + received[0])
