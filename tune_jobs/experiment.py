"""Where an experiment lives: ``STORAGE/NAME/`` on a local disk or behind a URI (``s3://bucket/prefix``).

The layout, written by Ray Tune and by :mod:`tune_jobs.finish`::

    STORAGE/NAME/
      textune-job.yaml          the validated spec the run used (``textune resume`` reads it back)
      .textune-lock             locked by the live driver, if any (local storage: tune_jobs.lifecycle)
      experiment_state-*.json   Ray Tune's experiment state (the searcher's state beside it, and in
                                callback-states-*.pkl ASHA's rung records: tune_jobs.asha_state)
      trial_XXXXX/              one directory per trial: results, checkpoints, TensorBoard curves, and its
                                HParams session as a run of its own, hparams-STATUS/ (tune_jobs.hparams)
      events.out.tfevents.*     the experiment-level TensorBoard HParams config
      results.parquet           a row per trial
      evaluations.parquet       a row per evaluation of every trial
      best/                     a copy of the best trial's best checkpoint

A simulated search (``textune replay`` writes one per strategy under ``EXPERIMENT/replay/searches/``) has only
``textune-simulated.json``, ``textune-job.yaml`` and the two tables: its trials were replayed from recorded
curves and trained nothing, so it has no checkpoints, no best/, no Ray Tune state and no TensorBoard files.
:meth:`Experiment.simulation` is the one test for it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow.fs

from cluster.storage import StorageOptions, join_uri, reaching, resolve_storage
from textune.errors import TextuneError
from textune.paths import expand_path

SPEC_FILE = "textune-job.yaml"
RESULTS_FILE = "results.parquet"
EVALUATIONS_FILE = "evaluations.parquet"
BEST_DIR = "best"
# Marks a simulated search and says what it replayed (tune_jobs.replay.experiment_replay writes it first).
SIMULATED_FILE = "textune-simulated.json"


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
        """Whether a textune experiment is here; a TextuneError naming the storage when it cannot be reached."""
        filesystem, path = self.filesystem()
        with reaching(self.storage, self.options):
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

    def simulation(self) -> dict[str, Any] | None:
        """What ``textune replay`` recorded about this simulated search (``replayed_from``, ``strategy``, ``seed``,
        ``fill``, ``extrapolated_share``), or None for a search whose trials were trained. A marker that is not
        a JSON object still marks the search as simulated (as ``{}``)."""
        filesystem, path = self.filesystem()
        try:
            with filesystem.open_input_stream(f"{path}/{SIMULATED_FILE}") as handle:
                document = json.loads(handle.read().decode("utf-8"))
        except FileNotFoundError:
            return None
        except ValueError:  # damaged: what it replayed is unknown, that it is simulated is not
            return {}
        return document if isinstance(document, dict) else {}


def require_trained(experiment: Experiment, lacks: str, hint: str | None = None) -> None:
    """TextuneError when ``experiment`` is a simulated search, which has no ``lacks`` (e.g. "checkpoint"): one
    paragraph for every command that needs what only trained trials leave behind. ``hint`` replaces the default
    one (train its best config with ``textune confirm``)."""
    simulation = experiment.simulation()
    if simulation is None:
        return
    raise TextuneError(
        f"{experiment.root} is a simulated search ({describe_simulation(simulation)}): its trials were replayed "
        f"from recorded curves and trained nothing, so it has no {lacks}.",
        hint
        or f"Train its best config for real with: textune confirm {experiment.root} --top-k 1 --seeds 1 (a "
        f"search under {experiment.root}/confirm/ with checkpoints and best/); textune best, analyze and report "
        "read the simulated search itself.",
    )


def describe_simulation(simulation: dict[str, Any]) -> str:
    """What a simulated search replayed, in a few words, from its marker (:meth:`Experiment.simulation`)."""
    if not {"replayed_from", "strategy", "extrapolated_share", "fill"} <= simulation.keys():
        return "written by textune replay"
    return (
        f"textune replay of {simulation['replayed_from']} with {simulation['strategy']}; "
        f"{100 * simulation['extrapolated_share']:.0f}% of its evaluations came from the {simulation['fill']} fill"
    )


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
        filesystem, root = experiment.filesystem()
        found = filesystem.get_file_info(root).type
        why = {
            pyarrow.fs.FileType.NotFound: "the directory does not exist.",
            pyarrow.fs.FileType.File: "it is a file, not an experiment directory.",
        }.get(found, f"there is no {SPEC_FILE} in it.")
        raise TextuneError(
            f"{path} is not a textune experiment: {why}",
            "Give the directory textune run created: STORAGE/NAME, e.g. experiments/quickstart.",
        )
    return experiment
