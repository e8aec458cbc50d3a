"""The analysis files of an experiment: JSON documents under ``EXPERIMENT/analysis/``.

``textune analyze`` writes ``importance.json``, ``textune confirm`` ``confirm.json`` and ``textune report``
``samples.json``. They go through the experiment's pyarrow filesystem, so an experiment under ``s3://`` is
analysed in place. A document is written to a temporary name and moved over the old one, so a reader never
sees half a file.
"""

from __future__ import annotations

import json
from typing import Any

import pyarrow.fs

from textune.errors import TextuneError
from tune_jobs.experiment import Experiment

ANALYSIS_DIR = "analysis"
IMPORTANCE_FILE = "importance.json"
CONFIRM_FILE = "confirm.json"
SAMPLES_FILE = "samples.json"


def analysis_path(experiment: Experiment, name: str) -> tuple[pyarrow.fs.FileSystem, str]:
    filesystem, root = experiment.filesystem()
    return filesystem, f"{root}/{ANALYSIS_DIR}/{name}"


def read_analysis(experiment: Experiment, name: str) -> dict[str, Any] | None:
    """The document ``analysis/<name>``, or None when the command that writes it has not run."""
    filesystem, path = analysis_path(experiment, name)
    try:
        with filesystem.open_input_stream(path) as handle:
            text = handle.read().decode("utf-8")
    except FileNotFoundError:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise TextuneError(f"{experiment.root}/{ANALYSIS_DIR}/{name} is not valid JSON (line {exc.lineno}).",
                           "Delete it and rerun the command that writes it.") from exc


def write_analysis(experiment: Experiment, name: str, document: dict[str, Any]) -> str:
    """Write ``analysis/<name>`` (replacing an older one atomically where the filesystem can); its path."""
    filesystem, path = analysis_path(experiment, name)
    filesystem.create_dir(path.rsplit("/", 1)[0], recursive=True)
    staging = f"{path}.partial"
    with filesystem.open_output_stream(staging) as handle:
        handle.write(json.dumps(document, indent=2, allow_nan=False).encode("utf-8"))
    filesystem.move(staging, path)
    return path
