"""``textune confirm``: re-train a search's top configs with fresh seeds (and validation folds) and test the lead."""

from __future__ import annotations

import click

from textune import strict_json
from tune_jobs.cli.params import TOP_K_OPTION, gcs_address_option


@click.command("confirm")
@click.argument("experiment_dir", metavar="EXPERIMENT")
@TOP_K_OPTION
@click.option("--seeds", type=click.IntRange(min=1), required=True, help="Fresh seeds per config (and per fold).")
@click.option(
    "--folds",
    type=click.IntRange(min=2),
    default=None,
    help="Validate on each of F contiguous chunks of the train+val text in turn (F >= 2); without it, "
    "on the prepared val split.",
)
@gcs_address_option("Without it, an embedded local Ray (127.0.0.1 only) trains the runs.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary (analysis/confirm.json) as JSON.")
def confirm_command(
    experiment_dir: str, top_k: int, seeds: int, folds: int | None, address: str | None, as_json: bool
) -> None:
    """Is the winner of EXPERIMENT real? Re-train its TOP-K configs at the full budget, SEEDS times each (on
    FOLDS validation folds), report mean and std per config and a paired test of the best against the
    runner-up. Running it again continues an interrupted confirmation (EXPERIMENT/confirm/) or reprints a
    finished one."""
    from textune.config import validate
    from tune_jobs.analysis.confirm import confirm_experiment
    from tune_jobs.analysis.confirm_plan import ConfirmOptions
    from tune_jobs.analysis.confirm_summary import format_summary
    from tune_jobs.analysis.store import ANALYSIS_DIR, CONFIRM_FILE

    flags = {"top_k": "--top-k", "seeds": "--seeds", "folds": "--folds"}
    options = validate(ConfirmOptions, {"top_k": top_k, "seeds": seeds, "folds": folds}, "textune confirm", flags)
    outcome = confirm_experiment(experiment_dir, options, address)
    if outcome.summary is None:
        command = f"textune confirm {experiment_dir} --top-k {top_k} --seeds {seeds}" + (
            f" --folds {folds}" if folds else ""
        )
        click.echo(f"{outcome.unfinished} confirmation run(s) unfinished in {outcome.root}; continue with: {command}")
        return
    if as_json:
        click.echo(strict_json.dumps(outcome.summary, indent=2))
        return
    click.echo(format_summary(outcome.summary))
    click.echo(f"\nsummary: {experiment_dir.rstrip('/')}/{ANALYSIS_DIR}/{CONFIRM_FILE}; runs: {outcome.root}")
