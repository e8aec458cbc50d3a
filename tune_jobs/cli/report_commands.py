"""``textune report``: an HTML page of a finished search, its analyses and samples of its best models."""

from __future__ import annotations

from pathlib import Path

import click

from tune_jobs.cli.params import TOP_K_OPTION, LocalPath


@click.command("report")
@click.argument("experiment_dir", metavar="EXPERIMENT")
@click.option(
    "--out",
    "out_dir",
    type=LocalPath("dir"),
    default=None,
    help="Directory for index.html and the PNGs (default: EXPERIMENT/report). A directory holding "
    "anything but an earlier report is refused.",
)
@TOP_K_OPTION
@click.option("--prompt", "prompts", multiple=True, help="A prompt to continue (repeatable; default: a newline).")
@click.option(
    "--seeds", type=click.IntRange(1, 100), default=3, show_default=True, help="Samples per prompt, seeded 0, 1, ..."
)
@click.option(
    "--max-new-tokens",
    type=click.IntRange(1, 10_000),
    default=200,
    show_default=True,
    help="Length of each sample (the page shows them whole).",
)
def report_command(
    experiment_dir: str, out_dir: Path | None, top_k: int, prompts: tuple[str, ...], seeds: int, max_new_tokens: int
) -> None:
    """Write an HTML report of EXPERIMENT: learning curves, best so far against compute, configs against the
    metric, importance (textune analyze) and confirmation (textune confirm) when they exist, text samples of
    the top configs with their diversity and repetition (saved as EXPERIMENT/analysis/samples.json), and the
    cost in tokens, FLOPs and device-hours."""
    from textune.config import validate
    from tune_jobs.analysis.quality import QualityConfig
    from tune_jobs.experiment import open_experiment
    from tune_jobs.lifecycle import require_ended

    # Both checks come before the report's heavy imports (torch, Ray, matplotlib): bad input fails at once.
    experiment = open_experiment(experiment_dir)
    require_ended(experiment, "report on it")
    options = {"top_k": top_k, "seeds": list(range(seeds)), "max_new_tokens": max_new_tokens}
    if prompts:
        options["prompts"] = list(prompts)
    flags = {"top_k": "--top-k", "seeds": "--seeds", "max_new_tokens": "--max-new-tokens", "prompts": "--prompt"}
    quality = validate(QualityConfig, options, "textune report", flags)

    from tune_jobs.analysis.report import write_report

    click.echo(f"report: {write_report(experiment, quality, out_dir)}")
