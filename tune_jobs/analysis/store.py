"""The analysis files of an experiment: JSON documents under ``EXPERIMENT/analysis/``.

``textune analyze`` writes ``importance.json``, ``textune confirm`` ``confirm.json`` and ``textune report``
``samples.json``. They go through the experiment's pyarrow filesystem, so an experiment under ``s3://`` is
analysed in place. A document is written to a temporary name and moved over the old one, so a reader never
sees half a file.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pyarrow.fs

from textune import strict_json
from textune.errors import TextuneError
from textune.paths import writable
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
            content = handle.read()
    except FileNotFoundError:
        return None
    try:
        document = json.loads(content.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        where = f"line {exc.lineno}" if isinstance(exc, json.JSONDecodeError) else f"byte {exc.start}"
        raise TextuneError(
            f"{experiment.root}/{ANALYSIS_DIR}/{name} is not valid JSON ({where}).",
            "Delete it and rerun the command that writes it.",
        ) from exc
    if not isinstance(document, dict):
        raise TextuneError(
            f"{experiment.root}/{ANALYSIS_DIR}/{name} is not a textune analysis document (it holds no JSON object).",
            "Delete it and rerun the command that writes it.",
        )
    return document


def write_analysis(experiment: Experiment, name: str, document: dict[str, Any]) -> str | None:
    """Write ``analysis/<name>`` (replacing an older one atomically where the filesystem can); its path.

    The documents are records of what a command printed, so an experiment that cannot be written (a read-only
    mount, another user's files) still gets the analysis: the document is not saved, a warning says so, and
    the result is None.
    """
    filesystem, path = analysis_path(experiment, name)
    staging = f"{path}.partial"
    try:
        filesystem.create_dir(path.rsplit("/", 1)[0], recursive=True)
        with filesystem.open_output_stream(staging) as handle:
            handle.write(strict_json.dumps(document, indent=2).encode("utf-8"))
        filesystem.move(staging, path)
    except OSError as exc:
        local = isinstance(filesystem, pyarrow.fs.LocalFileSystem)
        if not local or writable(Path(path).parent):
            raise  # a fault of a writable experiment (a full disk) is not to be passed over
        logging.getLogger(__name__).warning(
            "%s/%s/%s not saved: the experiment cannot be written (%s)", experiment.root, ANALYSIS_DIR, name, exc
        )
        return None
    return path
