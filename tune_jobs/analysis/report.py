"""``textune report``: gather an experiment's results and analyses, draw the figures, write the page.

The page goes to ``EXPERIMENT/report/`` (through the experiment's filesystem, so also under ``s3://``) or to
a local ``--out`` directory: ``index.html`` with every figure embedded, and the figures as PNG files beside
it for reuse. The samples it shows are drawn here and saved as ``analysis/samples.json``. A report
directory is replaced as a whole; a directory that holds anything but an earlier report is refused.
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import pyarrow.fs

from textune.errors import TextuneError
from tune_jobs.analysis.quality import QualityConfig, sample_top_configs
from tune_jobs.analysis.report_html import GENERATOR, ReportContent, render_page
from tune_jobs.analysis.store import CONFIRM_FILE, IMPORTANCE_FILE, SAMPLES_FILE, read_analysis, write_analysis
from tune_jobs.cost import UNIT_NAMES, devices_per_trial, experiment_cost
from tune_jobs.experiment import Experiment
from tune_jobs.results import best_trial, read_evaluations, read_trials

REPORT_DIR = "report"
INDEX_FILE = "index.html"
# What the best-so-far figure orders the evaluations by. Every search of this version records them; an
# experiment without them still gets the rest of the report.
TIMING_COLUMNS = ("timestamp", "time_total_s")


def build_content(experiment: Experiment, quality: QualityConfig) -> ReportContent:
    """Read, sample and draw everything the page shows (the samples are saved on the way)."""
    from tune_jobs.analysis import report_figures as figures
    from tune_jobs.runner import load_saved_spec
    from tune_jobs.search import rung_milestones  # imports Ray: here, so bad --out fails before that

    spec = load_saved_spec(experiment)
    trials, evaluations = read_trials(experiment), read_evaluations(experiment)
    best = best_trial(trials)  # refuses an experiment without a single scored trial
    floor = float(best["floor_bpc"]) if math.isfinite(float(best["floor_bpc"])) else None
    samples = sample_top_configs(experiment, trials, quality)
    write_analysis(experiment, SAMPLES_FILE, samples)
    importance = read_analysis(experiment, IMPORTANCE_FILE)
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
            "by then, is unknown.")
    else:
        drawn["best_so_far"] = figures.best_so_far(evaluations, spec.metric, spec.mode,
                                                   devices_per_trial(spec.resources),
                                                   UNIT_NAMES[str(trials["device_kind"].iloc[0])], floor)
    if importance is not None:
        drawn["importance"] = figures.importance_chart(importance)
    return ReportContent(name=spec.name, metric=spec.metric, mode=spec.mode, trials=trials,
                         cost=experiment_cost(trials), figures=drawn, not_drawn=not_drawn, samples=samples,
                         importance=importance, confirm=read_analysis(experiment, CONFIRM_FILE),
                         experiment_root=experiment.root)


def write_report(experiment: Experiment, quality: QualityConfig, out_dir: Path | None = None) -> str:
    """Write the report of ``experiment``; the location of its ``index.html``."""
    if out_dir is not None:
        filesystem: pyarrow.fs.FileSystem = pyarrow.fs.LocalFileSystem()
        target, shown = str(out_dir.resolve()), str(out_dir)
    else:
        filesystem, root = experiment.filesystem()
        target, shown = f"{root}/{REPORT_DIR}", f"{experiment.root}/{REPORT_DIR}"
    check_replaceable(filesystem, target, shown)  # before the minutes of sampling and drawing
    content = build_content(experiment, quality)
    with tempfile.TemporaryDirectory(prefix="textune-report-") as staging:
        for name, png in content.figures.items():
            (Path(staging) / f"{name}.png").write_bytes(png)
        (Path(staging) / INDEX_FILE).write_text(render_page(content), encoding="utf-8")
        if filesystem.get_file_info(target).type == pyarrow.fs.FileType.Directory:
            filesystem.delete_dir_contents(target)
        filesystem.create_dir(target, recursive=True)
        pyarrow.fs.copy_files(staging, target, source_filesystem=pyarrow.fs.LocalFileSystem(),
                              destination_filesystem=filesystem)
    return f"{shown}/{INDEX_FILE}"


def check_replaceable(filesystem: pyarrow.fs.FileSystem, target: str, shown: str) -> None:
    """Refuse a target that is a file, or a non-empty directory that is not an earlier report."""
    info = filesystem.get_file_info(target)
    if info.type == pyarrow.fs.FileType.NotFound:
        return
    if info.type != pyarrow.fs.FileType.Directory:
        raise TextuneError(f"report directory {shown} is a file, not a directory.",
                           "Give --out a new or empty directory.")
    entries = filesystem.get_file_info(pyarrow.fs.FileSelector(target))
    if not entries:
        return
    index = f"{target}/{INDEX_FILE}"
    if filesystem.get_file_info(index).type == pyarrow.fs.FileType.File:
        with filesystem.open_input_stream(index) as handle:
            if f'<meta name="generator" content="{GENERATOR}">' in handle.read(4096).decode("utf-8", "replace"):
                return
    raise TextuneError(f"{shown} already holds files that are not a textune report; the report would replace them.",
                       "Give --out a new or empty directory.")
