"""Where an experiment lives: ``STORAGE/NAME/`` on a local disk or behind a URI (``s3://bucket/prefix``).

The layout, written by Ray Tune and by :mod:`tune_jobs.finish`::

    STORAGE/NAME/
      textune-job.yaml          the validated spec the run used (``textune resume`` reads it back)
      .textune-lock             locked by the live driver, if any (local storage: tune_jobs.lifecycle)
      experiment_state-*.json   Ray Tune's experiment state (the searcher's state beside it, and in
                                callback-states-*.pkl ASHA's rung records: tune_jobs.asha_state)
      trial_XXXXX/              one directory per trial: results, checkpoints, TensorBoard curves + HParams session
      events.out.tfevents.*     the experiment-level TensorBoard HParams config
      results.parquet           a row per trial
      evaluations.parquet       a row per evaluation of every trial
      best/                     a copy of the best trial's best checkpoint
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pyarrow.fs

from cluster.storage import StorageOptions, join_uri, resolve_storage
from textune.errors import TextuneError
from textune.paths import expand_path

SPEC_FILE = "textune-job.yaml"
RESULTS_FILE = "results.parquet"
EVALUATIONS_FILE = "evaluations.parquet"
BEST_DIR = "best"


@dataclass(frozen=True)
class Experiment:
    """An experiment directory: ``root`` is a local absolute path or a URI; ``name`` its last component."""

    storage: str
    name: str
    options: StorageOptions = field(default_factory=StorageOptions)

    @property
    def root(self) -> str:
        return join_uri(self.storage, self.name)

    def filesystem(self) -> tuple[pyarrow.fs.FileSystem, str]:
        """The pyarrow filesystem and the path of ``root`` inside it."""
        return resolve_storage(self.root, self.options)

    def exists(self) -> bool:
        filesystem, path = self.filesystem()
        return filesystem.get_file_info(f"{path}/{SPEC_FILE}").type != pyarrow.fs.FileType.NotFound

    def local_path(self) -> Path:
        """The experiment directory on this machine (only for local storage)."""
        filesystem, path = self.filesystem()
        if not isinstance(filesystem, pyarrow.fs.LocalFileSystem):
            raise TextuneError(
                f"experiment {self.root} is not on this machine.",
                "Copy it here first, or run the command where the storage is mounted.",
            )
        return Path(path)


def experiment_at(storage: str, name: str, options: StorageOptions | None = None) -> Experiment:
    """The experiment ``name`` under ``storage``; a local storage path is made absolute."""
    if "://" not in storage:
        storage = str(expand_path(storage))
    return Experiment(storage=storage, name=name, options=options or StorageOptions())


def open_experiment(path: str | Path) -> Experiment:
    """An existing experiment given as its directory (local path or URI), e.g. on ``textune resume``."""
    text = str(path)
    if "://" not in text:
        text = str(expand_path(text))
    base, sep, query = text.partition("?")  # a URI may carry storage options as a ?query
    storage, _, name = base.rstrip("/").rpartition("/")
    experiment = Experiment(storage=(storage or "/") + sep + query, name=name)
    if not experiment.exists():
        raise TextuneError(
            f"{path} is not a textune experiment (no {SPEC_FILE} in it).",
            "Give the directory textune run created: STORAGE/NAME, e.g. experiments/quickstart.",
        )
    return experiment
