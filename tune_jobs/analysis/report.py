"""``textune report``: gather an experiment's results and analyses, draw the figures, write the page.

The page goes to ``EXPERIMENT/report/`` (through the experiment's filesystem, so also under ``s3://``) or to
a local ``--out`` directory: ``index.html`` with every figure embedded, and the figures as PNG files beside
it for reuse, and ``.textune-report.json`` listing them. The samples it shows are drawn here and saved as
``analysis/samples.json``. A new report replaces the files an earlier one listed there and touches nothing
else; a directory that holds anything else is refused before anything is drawn.
"""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path

import pyarrow.fs

from textune import strict_json
from textune.errors import TextuneError
from textune.paths import writable
from tune_jobs.analysis.importance import stored_report
from tune_jobs.analysis.quality import QualityConfig, sample_top_configs
from tune_jobs.analysis.report_html import GENERATOR, ReportContent, render_page
from tune_jobs.analysis.store import CONFIRM_FILE, IMPORTANCE_FILE, SAMPLES_FILE, read_analysis, write_analysis
from tune_jobs.cost import UNIT_NAMES, devices_per_trial, experiment_cost
from tune_jobs.experiment import Experiment
from tune_jobs.replay.experiment_replay import read_replay
from tune_jobs.results.parquet import read_evaluations, read_trials
from tune_jobs.results.table import best_trial

REPORT_DIR = "report"
INDEX_FILE = "index.html"
# The names of the files a report wrote, beside them: a later report replaces exactly those and nothing else.
MANIFEST_FILE = ".textune-report.json"
# What the best-so-far figure orders the evaluations by. Every search of this version records them; an
# experiment without them still gets the rest of the report.
TIMING_COLUMNS = ("timestamp", "time_total_s")


def build_content(experiment: Experiment, quality: QualityConfig) -> ReportContent:
    """Read, sample and draw everything the page shows (the samples are saved on the way)."""
    from tune_jobs.analysis import report_figures as figures
    from tune_jobs.search import rung_milestones  # imports Ray: here, so bad --out fails before that
    from tune_jobs.spec import load_saved_spec

    spec = load_saved_spec(experiment)
    trials, evaluations = read_trials(experiment), read_evaluations(experiment)
    simulated = experiment.simulation()
    if simulated is not None and "clock_s" in evaluations:  # a simulated search happened on its simulated clock
        evaluations = evaluations.assign(timestamp=evaluations["clock_s"])
    best = best_trial(trials)  # refuses an experiment without a single scored trial
    floor = float(best["floor_bpc"]) if math.isfinite(float(best["floor_bpc"])) else None
    # Every file is read before the samples are written: a damaged one changes nothing.
    importance, confirm = read_analysis(experiment, IMPORTANCE_FILE), read_analysis(experiment, CONFIRM_FILE)
    replay = read_replay(experiment)  # textune replay's comparison, when it has run
    samples = sample_top_configs(experiment, trials, quality)
    write_analysis(experiment, SAMPLES_FILE, samples)
    drawn = {
        "learning_curves": figures.learning_curves(evaluations, trials, rung_milestones(spec), floor),
        "parallel_coordinates": figures.parallel_coordinates(trials, spec.space, spec.metric, spec.mode),
    }
    not_drawn: dict[str, str] = {}
    untimed = [column for column in TIMING_COLUMNS if column not in evaluations]
    if untimed:
        not_drawn["best_so_far"] = (
            f"Not drawn: the evaluations table has no {' or '.join(untimed)} column (an experiment written by an "
            "older textune, or by other tools), so when each evaluation happened, and what the search had spent "
            "by then, is unknown."
        )
    else:
        drawn["best_so_far"] = figures.best_so_far(
            evaluations,
            spec.metric,
            spec.mode,
            devices_per_trial(spec.resources),
            UNIT_NAMES[str(trials["device_kind"].iloc[0])],
            floor,
        )
    if replay is not None and replay[1] is not None:
        drawn["replay"] = replay[1]
    stored = stored_report(importance) if importance is not None else None
    if stored is not None and stored.no_ranking_reason is None:  # no chart of a ranking the search cannot back
        drawn["importance"] = figures.importance_chart(stored)
    return ReportContent(
        name=spec.name,
        metric=spec.metric,
        mode=spec.mode,
        trials=trials,
        cost=experiment_cost(trials),
        figures=drawn,
        not_drawn=not_drawn,
        samples=samples,
        importance=importance,
        confirm=confirm,
        replay=replay[0] if replay else None,
        experiment_root=experiment.root,
        simulated=simulated,
    )


def write_report(experiment: Experiment, quality: QualityConfig, out_dir: Path | None = None) -> str:
    """Write the report of ``experiment``; the location of its ``index.html``.

    Raises TextuneError (before any sampling) when the target holds anything but an earlier report.
    """
    if out_dir is not None:
        filesystem: pyarrow.fs.FileSystem = pyarrow.fs.LocalFileSystem()
        target, shown = str(out_dir.resolve()), str(out_dir)
    else:
        filesystem, root = experiment.filesystem()
        target, shown = f"{root}/{REPORT_DIR}", f"{experiment.root}/{REPORT_DIR}"
    previous = previous_report_files(filesystem, target, shown)  # before the minutes of sampling and drawing
    if isinstance(filesystem, pyarrow.fs.LocalFileSystem) and not writable(Path(target)):
        raise TextuneError(
            f"report directory {shown} cannot be written (a read-only file system, or not this user's).",
            "Give --out a directory this user can write; the experiment itself may stay read-only.",
        )
    content = build_content(experiment, quality)
    with tempfile.TemporaryDirectory(prefix="textune-report-") as staging:
        written = [INDEX_FILE, *(f"{name}.png" for name in content.figures)]
        for name, png in content.figures.items():
            (Path(staging) / f"{name}.png").write_bytes(png)
        (Path(staging) / INDEX_FILE).write_text(render_page(content), encoding="utf-8")
        (Path(staging) / MANIFEST_FILE).write_text(strict_json.dumps(written), encoding="utf-8")
        filesystem.create_dir(target, recursive=True)
        pyarrow.fs.copy_files(
            staging, target, source_filesystem=pyarrow.fs.LocalFileSystem(), destination_filesystem=filesystem
        )
    for name in set(previous) - {MANIFEST_FILE, *written}:  # a figure the earlier report had, this one has not
        filesystem.delete_file(f"{target}/{name}")
    return f"{shown}/{INDEX_FILE}"


def previous_report_files(filesystem: pyarrow.fs.FileSystem, target: str, shown: str) -> list[str]:
    """The files of an earlier report in ``target`` (none for a new or empty directory), which the new report
    replaces.

    Raises TextuneError when ``target`` is a file, or holds anything the earlier report did not write
    (recorded in its manifest): those are the user's, and a report never deletes or overwrites them.
    """
    info = filesystem.get_file_info(target)
    if info.type == pyarrow.fs.FileType.NotFound:
        return []
    if info.type != pyarrow.fs.FileType.Directory:
        raise TextuneError(
            f"report directory {shown} is a file, not a directory.", "Give --out a new or empty directory."
        )
    present = {
        entry.base_name + ("/" if entry.type == pyarrow.fs.FileType.Directory else "")
        for entry in filesystem.get_file_info(pyarrow.fs.FileSelector(target))
    }
    if not present:
        return []
    listed = _manifest(filesystem, target)
    foreign = sorted(present - {MANIFEST_FILE, *listed})
    if listed and INDEX_FILE in present and not foreign and _is_report_page(filesystem, f"{target}/{INDEX_FILE}"):
        return sorted(present & {MANIFEST_FILE, *listed})
    named = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
    raise TextuneError(
        f"{shown} holds files that are not a textune report ({named}); a report there could "
        "replace them, so nothing was written.",
        "Give --out a new or empty directory (a directory holding only an earlier report is replaced).",
    )


def _manifest(filesystem: pyarrow.fs.FileSystem, target: str) -> list[str]:
    """The file names an earlier report recorded as its own; none when there is no readable manifest."""
    try:
        with filesystem.open_input_stream(f"{target}/{MANIFEST_FILE}") as handle:
            names = json.loads(handle.read().decode("utf-8"))
    except (FileNotFoundError, UnicodeDecodeError, json.JSONDecodeError):
        return []
    plain = isinstance(names, list) and all(isinstance(n, str) and n and "/" not in n for n in names)
    return names if plain else []


def _is_report_page(filesystem: pyarrow.fs.FileSystem, index: str) -> bool:
    with filesystem.open_input_stream(index) as handle:
        return f'<meta name="generator" content="{GENERATOR}">' in handle.read(4096).decode("utf-8", "replace")
