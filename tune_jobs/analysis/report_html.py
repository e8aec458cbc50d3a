"""The report page: one HTML file with its figures embedded as data: URIs, its style inline and no script.

It opens from disk with no network. Every piece of text that comes from the experiment (trial ids, configs,
error messages and above all the model's samples) is escaped, so a sample that happens to contain markup
is shown, never interpreted.
"""

from __future__ import annotations

import base64
import math
from dataclasses import dataclass
from html import escape
from typing import Any

import pandas as pd

from tune_jobs.analysis.importance import NULL_SHUFFLES, TRIALS_PER_HYPERPARAMETER, best_at, stored_report
from tune_jobs.cost import UNIT_NAMES
from tune_jobs.experiment import describe_simulation
from tune_jobs.results.table import searched_config

GENERATOR = "textune report"  # the page's <meta name="generator">: marks a directory as a report's
STYLE = """
body { font-family: sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em; color: #222; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: .2em; margin-top: 2em; }
table { border-collapse: collapse; margin: .5em 0; font-size: .9em; }
th, td { border: 1px solid #ddd; padding: .25em .6em; text-align: left; }
th { background: #f3f3f3; } td.number { text-align: right; font-variant-numeric: tabular-nums; }
img { max-width: 100%; display: block; margin: .5em 0; }
pre { background: #f7f7f7; padding: .6em; white-space: pre-wrap; word-break: break-all; }
p.missing { color: #666; font-style: italic; }
"""


@dataclass
class ReportContent:
    """Everything the page shows, already computed."""

    name: str
    metric: str
    mode: str
    trials: pd.DataFrame  # best first, with the cost columns
    cost: dict[str, Any]  # tune_jobs.cost.experiment_cost
    figures: dict[str, bytes]  # figure name -> PNG
    not_drawn: dict[str, str]  # figure name -> why the experiment's tables cannot give it
    samples: dict[str, Any]  # analysis/samples.json
    importance: dict[str, Any] | None  # analysis/importance.json, when analyze has run
    confirm: dict[str, Any] | None  # analysis/confirm.json, when confirm has run
    replay: dict[str, Any] | None  # replay/replay.json, when textune replay has run
    experiment_root: str
    simulated: dict[str, Any] | None = None  # Experiment.simulation(): a search textune replay simulated


def number(value: Any, digits: int = 4) -> str:
    if isinstance(value, float):
        return f"{value:.{digits}g}" if math.isfinite(value) else str(value)
    return escape(str(value))


def table(header: list[str], rows: list[list[Any]]) -> str:
    """A table; numbers are right-aligned, everything is escaped."""
    head = "".join(f"<th>{escape(cell)}</th>" for cell in header)
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="number">{number(cell)}</td>'
            if isinstance(cell, (int, float))
            else f"<td>{escape(str(cell))}</td>"
            for cell in row
        )
        + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def describe_config(config: dict[str, Any]) -> str:
    return ", ".join(f"{key}={number(value)}" for key, value in config.items())


def image(content: ReportContent, name: str, alt: str) -> str:
    encoded = base64.b64encode(content.figures[name]).decode("ascii")
    return f'<img src="data:image/png;base64,{encoded}" alt="{escape(alt)}">'


def figure(content: ReportContent, name: str, alt: str) -> str:
    """The figure, or the reason it is missing."""
    if name in content.not_drawn:
        return f'<p class="missing">{escape(content.not_drawn[name])}</p>'
    return image(content, name, alt)


def section(anchor: str, title: str, body: str) -> str:
    return f'<section id="{anchor}"><h2>{escape(title)}</h2>{body}</section>'


def missing(command: str, what: str) -> str:
    return f'<p class="missing">No {escape(what)} yet: <code>{escape(command)}</code> produces it.</p>'


def summary(content: ReportContent) -> str:
    counts = content.trials["status"].value_counts()
    best = content.trials.iloc[0]
    floor = float(best["floor_bpc"])
    line = (
        f"{len(content.trials)} trials ({', '.join(f'{n} {s}' for s, n in counts.items())}). Best trial "
        f"{best['trial_id']}: {content.metric} {best['best_metric']:.4f} ({content.mode}imised) after "
        f"{int(best['tokens']):,} tokens, with {describe_config(searched_config(best))}. "
    )
    if content.simulated is not None:
        line += (
            f"This is a simulated search ({describe_simulation(content.simulated)}): its trials were replayed "
            "from recorded curves and trained nothing, so it has no checkpoints and no samples. textune confirm "
            "trains its top configs for real."
        )
    else:
        line += "That is one training run on one seed: whether its lead is real is what the confirmation below tests."
    if math.isfinite(floor):
        line += f" The corpus' entropy floor is {floor:.4f} bits per character."
    return f"<p>{escape(line)}</p><p>Experiment: <code>{escape(content.experiment_root)}</code></p>"


def importance_section(content: ReportContent) -> str:
    """The ranking with its chance levels, stated with its evidence; or why this search cannot back one."""
    found = content.importance
    if found is None:
        return missing("textune analyze EXPERIMENT", "hyperparameter importance")
    report = stored_report(found)
    if report is None:
        return (
            '<p class="missing">analysis/importance.json was written by an older textune, without the evidence '
            "a ranking is checked against: <code>textune analyze EXPERIMENT</code> writes it anew.</p>"
        )
    evidence = (
        f"<p>Evidence: functional ANOVA over a random-forest surrogate of {escape(report.metric)}, fitted on "
        f"{report.n_trials} finished trials of {report.n_hyperparameters} hyperparameters "
        f"({escape(report.budget_rule)}); its out-of-bag R² is {report.oob_r2:.3f}. A ranking needs at least "
        f"{report.trials_needed} trials ({TRIALS_PER_HYPERPARAMETER} per hyperparameter) and an out-of-bag R² "
        "above 0.</p>"
    )
    if report.no_ranking_reason is not None:
        return evidence + f'<p class="missing">{escape(report.no_ranking_reason)}</p>'
    rows = [
        [
            entry.param,
            f"{100 * entry.share:.1f}%",
            f"{100 * entry.chance_share:.1f}%",
            f"{100 * entry.share_above_chance:.1f}%",
            "yes" if entry.beyond_chance else "no (within chance)",
            best_at(report.main_effects[entry.param], report.mode),
        ]
        for entry in report.importance
    ]
    pairs = [[" × ".join(entry.params), f"{100 * entry.share:.1f}%"] for entry in report.interactions]
    legend = (
        f"<p>chance: the hyperparameter's mean share in {NULL_SHUFFLES} forests fitted with its values "
        f"shuffled across the trials; above: the share minus that; beyond chance: the share exceeds all "
        f"{NULL_SHUFFLES} (p ≤ 1/{NULL_SHUFFLES + 1}); best at: where its main-effect curve is best.</p>"
    )
    shares = table(["hyperparameter", "share", "chance", "above", "beyond chance", "best at"], rows)
    interactions = table(["pair", "interaction share"], pairs) if pairs else ""
    return evidence + image(content, "importance", "importance chart") + shares + legend + interactions


def confirm_section(content: ReportContent) -> str:
    found = content.confirm
    if found is None:
        return missing("textune confirm EXPERIMENT --top-k 3 --seeds 3", "confirmation runs")
    # A config with a diverged run has no mean (null in the document).
    rows = [
        [
            entry["rank"],
            entry["trial_id"],
            describe_config(entry["config"]),
            "a run diverged" if entry["mean"] is None else entry["mean"],
            "" if entry["std"] is None else entry["std"],
            len(entry["values"]),
        ]
        for entry in found["configs"]
    ]
    folds = f" × {found['folds']} validation folds" if found.get("folds") else " on the spec's validation split"
    body = f"<p>The top configs retrained at {found['max_tokens']:,} tokens with {found['seeds']} seed(s){folds}.</p>"
    body += table(["rank", "trial", "config", f"mean {found['metric']}", "std", "runs"], rows)
    test = found.get("paired_test")
    if test:
        verdict = "exceeds" if test["significant"] else "does not exceed"
        body += (
            f"<p>{escape(test['best'])} leads {escape(test['runner_up'])} by {abs(test['mean_diff']):.4g} "
            f"on average over {test['n']} paired runs ({escape(test['test'])}, p = {test['p_value']:.3g}): "
            f"the lead {verdict} the noise at α = {test['alpha']}.</p>"
        )
    elif found.get("no_test_reason"):
        body += f"<p>No paired test: {escape(found['no_test_reason'])}.</p>"
    return body


def samples_section(content: ReportContent) -> str:
    found = content.samples
    if content.simulated is not None:
        return '<p class="missing">A simulated search trained no model, so there is nothing to sample.</p>'
    if not found["configs"]:
        return '<p class="missing">No trial kept a checkpoint to sample from.</p>'
    rows = [
        [
            entry["rank"],
            entry["trial_id"],
            entry["best_metric"],
            entry["distinct_1"],
            entry["distinct_2"],
            entry["repetition_rate"],
            entry["self_bpc"],
            entry["self_ppl"],
        ]
        for entry in found["configs"]
    ]
    body = (
        f"<p>{len(found['seeds'])} seed(s) per prompt, {found['max_new_tokens']} new tokens at temperature "
        f"{found['temperature']}. distinct-n: unique word n-grams over all; repetition: share of a sample's "
        f"word {found['repetition_n']}-grams repeating an earlier one; self bpc / ppl: the samples scored by "
        "their own model.</p>"
    )
    body += table(
        ["rank", "trial", content.metric, "distinct-1", "distinct-2", "repetition", "self bpc", "self ppl"], rows
    )
    for entry in found["configs"]:
        body += f"<h3>#{entry['rank']} trial {escape(entry['trial_id'])}: {describe_config(entry['config'])}</h3>"
        for sample in entry["samples"]:
            body += (
                f"<p>prompt {escape(repr(sample['prompt']))}, seed {sample['seed']}:</p>"
                f"<pre>{escape(sample['prompt'] + sample['text'])}</pre>"
            )
    return body


def replay_section(content: ReportContent, found: dict[str, Any]) -> str:
    """What other strategies, replayed on this experiment's own curves (``found``: replay/replay.json), would
    have cost to reach its best."""
    from tune_jobs.replay.compare import format_ci

    error = found["fill_error"]
    body = (
        f"<p>{len(found['strategies'])} strategies replayed by <code>textune replay</code> on a simulated clock "
        f"against this experiment's {found['recorded']['trials']} recorded curves: {found['workers']} workers, "
        f"{found['seeds']} paired seeds, {found['trials']} trials each. Target: {escape(found['metric'])} "
        f"{found['target']:.4f}, the experiment's best; regret is the best found minus it. Evaluations the "
        f"experiment never made came from the {escape(found['fill'])} fill (held-out error, "
        f"{escape(error['scheme'])}: MAE {error['mae']:.3g}, RMSE {error['rmse']:.3g}). IQM over seeds with "
        "bootstrap 95% CIs. The experiment itself spent "
        f"{found['recorded']['tokens']:,} tokens and {found['recorded']['device_hours']:.4g} device-hours.</p>"
    )
    rows = [
        [
            s["strategy"],
            format_ci(s["regret"], ".4f"),
            f"{100 * s['within_0.01']['reached_share']:.0f}%",
            format_ci(s["within_0.01"]["tokens"], ",.0f"),
            format_ci(s["within_0.01"]["device_hours"], ".4g"),
            f"{100 * s['extrapolated_share']:.0f}%",
        ]
        for s in found["strategies"]
    ]
    body += table(
        ["strategy", "regret", "seeds within 1%", "tokens to within 1%", "device-hours to within 1%", "extrapolated"],
        rows,
    )
    if found.get("warning"):
        body += f'<p class="missing">{escape(found["warning"])}</p>'
    if "replay" in content.figures:
        body += image(content, "replay", "anytime regret of the replayed strategies")
    return body


def cost_section(content: ReportContent) -> str:
    total = content.cost
    unit = UNIT_NAMES[total["device_kind"]]
    body = (
        f"<p>The whole search: {total['trials']} trials, {total['tokens']:,} training tokens, "
        f"{total['flops']:.3g} FLOPs, {total['wall_time_s']:.1f} s of trial wall time, "
        f"{total['device_hours']:.4g} {unit}.</p>"
    )
    rows = [
        [
            row["trial_id"],
            row["status"],
            row["best_metric"],
            int(row["tokens"]),
            float(row["flops"]),
            float(row["wall_time_s"]),
            float(row["device_hours"]),
        ]
        for _, row in content.trials.iterrows()
    ]
    return body + table(["trial", "status", content.metric, "tokens", "FLOPs", "wall s", unit], rows)


def render_page(content: ReportContent) -> str:
    sections = [
        section("learning-curves", "Learning curves", image(content, "learning_curves", "learning curves")),
        section("best-so-far", "Best so far against compute", figure(content, "best_so_far", "best so far")),
        section(
            "parallel-coordinates",
            "Configs against the metric",
            image(content, "parallel_coordinates", "parallel coordinates"),
        ),
        section("importance", "Hyperparameter importance", importance_section(content)),
        section("confirmation", "Is the winner real", confirm_section(content)),
        section("samples", "Text samples of the top configs", samples_section(content)),
        section("cost", "Cost", cost_section(content)),
    ]
    if content.replay is not None:
        sections.insert(
            -1, section("replay", "Other strategies replayed on these curves", replay_section(content, content.replay))
        )
    title = f"textune report: {content.name}"
    # The empty icon keeps the browser from asking for a favicon.ico that is not there.
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta name="generator" content="{GENERATOR}"><link rel="icon" href="data:,">'
        f"<title>{escape(title)}</title>"
        f"<style>{STYLE}</style></head><body><h1>{escape(title)}</h1>{summary(content)}"
        + "".join(sections)
        + "</body></html>\n"
    )
