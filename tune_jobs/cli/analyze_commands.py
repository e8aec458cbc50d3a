"""``textune analyze``: which hyperparameters of a finished search matter, and how much."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from textune import strict_json

if TYPE_CHECKING:
    from tune_jobs.analysis.importance import ImportanceReport

BAR_WIDTH = 30


@click.command("analyze")
@click.argument("experiment_dir", metavar="EXPERIMENT")
@click.option("--json", "as_json", is_flag=True, help="Print the importance document as JSON instead of a table.")
def analyze_command(experiment_dir: str, as_json: bool) -> None:
    """Hyperparameter importance of EXPERIMENT: each hyperparameter's share of the metric's variance across
    the finished trials (functional ANOVA over a random-forest surrogate), its main-effect curve and the
    interactions of the top three. A search with fewer than 10 finished trials per hyperparameter, or whose
    surrogate predicts unseen trials no better than their mean, gets no ranking: it says why and how many
    trials it would take. Writes EXPERIMENT/analysis/importance.json (skipped, with a warning, when the
    experiment is read-only)."""
    from tune_jobs.analysis.importance import analyze_importance
    from tune_jobs.analysis.store import IMPORTANCE_FILE, write_analysis
    from tune_jobs.experiment import open_experiment
    from tune_jobs.lifecycle import require_ended
    from tune_jobs.results.parquet import read_trials
    from tune_jobs.spec import load_saved_spec

    experiment = open_experiment(experiment_dir)
    require_ended(experiment, "analyze it")
    report = analyze_importance(read_trials(experiment), load_saved_spec(experiment))
    document = report.model_dump(mode="json")
    path = write_analysis(experiment, IMPORTANCE_FILE, document)
    if as_json:
        click.echo(strict_json.dumps(document, indent=2))
        return
    click.echo(describe(report))
    if path is not None:  # None: a read-only experiment, which a warning named
        click.echo(f"\nwritten: {path}")


def describe(report: ImportanceReport) -> str:
    """The importance table: share, a bar, the chance level, the share above it and where the main-effect curve
    is best; or, for a search that cannot back a ranking, why not."""
    from tune_jobs.analysis.importance import best_at

    lines = [
        f"{report.metric} ({report.mode}) over {report.n_trials} finished trials of {report.n_hyperparameters} "
        f"hyperparameters; the surrogate's out-of-bag R² is {report.oob_r2:.2f}",
        f"budget rule: {report.budget_rule}",
        "",
    ]
    if report.no_ranking_reason is not None:
        return "\n".join([*lines, report.no_ranking_reason])
    width = max(len("(all interactions)"), *(len(share.param) for share in report.importance))
    lines.append(f"{'hyperparameter':<{width}}  share  {'':<{BAR_WIDTH}}  chance   above  best at")
    for share in report.importance:
        bar = "█" * round(BAR_WIDTH * share.share)
        best = best_at(report.main_effects[share.param], report.mode)
        shown = f"{best:.4g}" if isinstance(best, float) else str(best)
        verdict = "" if share.beyond_chance else "  (within chance)"
        lines.append(
            f"{share.param:<{width}}  {100 * share.share:4.1f}%  {bar:<{BAR_WIDTH}}  "
            f"{100 * share.chance_share:5.1f}%  {100 * share.share_above_chance:5.1f}%  {shown}{verdict}"
        )
    lines.append(f"{'(all interactions)':<{width}}  {100 * (1 - sum(s.share for s in report.importance)):4.1f}%")
    if report.interactions:
        lines += ["", "pairwise interactions of the top three (beyond their main effects):"]
        lines += [f"  {' × '.join(pair.params)}: {100 * pair.share:.1f}%" for pair in report.interactions]
    return "\n".join(lines)
