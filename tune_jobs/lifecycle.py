"""An experiment's life on storage: created by one run, driven by one live process, gone if it never started.

- ``textune run`` creates ``STORAGE/NAME`` with an exclusive ``mkdir`` before it prepares data or starts Ray,
  so of two runs of one name started at the same moment exactly one gets it; the other is refused.
- The process driving an experiment (``run`` or ``resume``, until its results are written) holds an exclusive
  ``flock`` on ``NAME/.textune-lock``; a ``resume`` of an experiment that a live process holds is refused. The
  kernel drops the lock when the process dies, however it dies, so a killed run never leaves a stale lock.
  The commands that read its results (best, analyze, report, confirm, replay) refuse it meanwhile
  (:func:`require_ended`): its results.parquet is written when the run ends.
- A run that fails before its first trial starts (a bad data source, no node fits a trial, an error inside Ray
  Tune's set-up) removes the experiment again, and every storage directory it created: the corrected spec is
  then accepted under the same name.

On remote storage (``s3://``, ``gs://``) pyarrow offers neither an exclusive create nor a lock, so there only
the existence check guards a name: two runs of one name started within the same second may both run, and a
``resume`` cannot tell whether another driver is live. Start such runs from one place (one CI job, one user).

``run --resume`` and ``resume`` continue the search the experiment was started with: a job spec that differs
from the saved one is refused (:func:`refuse_changed_spec`), and an experiment whose trials have all ended has
nothing to resume (:func:`nothing_to_resume`), which is said without starting Ray.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.fs

from cluster.storage import open_storage, reaching
from models.status import TrialStatus
from textune.errors import TextuneError
from tune_jobs.experiment import SPEC_FILE, Experiment
from tune_jobs.spec import JobSpec, load_saved_spec

LOCK_FILE = ".textune-lock"
# Keys that say where the experiment is, not what it computes: it was found there, so they cannot differ.
LOCATION_KEYS = ("name", "storage")
# A differing value longer than this is cut in the refusal, which must stay one paragraph.
SHOWN_VALUE_CHARS = 40


class NothingToResume(Exception):
    """Every trial of the experiment has ended; the message says how (not an error: exit status 0)."""


@contextlib.contextmanager
def new_experiment(experiment: Experiment, keep: Callable[[], bool]) -> Iterator[None]:
    """Create ``experiment`` for a new run and hold it for the ``with`` block.

    Refuses (TextuneError) an experiment that exists, and storage that cannot be written (before creating
    anything). If the block raises and ``keep()`` is false (no trial started), the experiment directory and
    the storage directories this call created are removed again before the exception goes on.
    """
    filesystem, path = experiment.filesystem()
    with reaching(experiment.storage, experiment.options):  # the first request to the storage
        _refuse_existing(experiment, filesystem, path)
    local = isinstance(filesystem, pyarrow.fs.LocalFileSystem)
    made = _missing_directories(Path(path).parent) if local else []
    try:
        open_storage(experiment.storage, experiment.options)  # writable, with free space
        lock = _create_locked(experiment, path) if local else None
    except BaseException:
        _remove_empty(made)
        raise
    try:
        yield
    except BaseException:
        if not keep():
            if local:
                shutil.rmtree(path, ignore_errors=True)
            elif filesystem.get_file_info(path).type != pyarrow.fs.FileType.NotFound:
                filesystem.delete_dir(path)
            _remove_empty(made)
        raise
    finally:
        if lock is not None:
            os.close(lock)


@contextlib.contextmanager
def held_experiment(experiment: Experiment) -> Iterator[None]:
    """Hold an existing experiment's lock for the ``with`` block (local storage; remote: see the module doc).

    Raises TextuneError when another live process holds it.
    """
    filesystem, path = experiment.filesystem()
    if not isinstance(filesystem, pyarrow.fs.LocalFileSystem):
        yield
        return
    lock = _lock(experiment, path)
    try:
        yield
    finally:
        os.close(lock)


def is_live(experiment: Experiment) -> bool:
    """Whether a live ``run`` or ``resume`` drives ``experiment`` now (local storage; remote: never known)."""
    filesystem, path = experiment.filesystem()
    return isinstance(filesystem, pyarrow.fs.LocalFileSystem) and _held(path)


def require_ended(experiment: Experiment, then: str) -> None:
    """TextuneError when a live ``run`` or ``resume`` drives ``experiment`` (it holds the lock): until that run
    ends its results.parquet is missing or the previous run's, not final. ``then`` is what to do once it has
    ended, e.g. "replay it". For the commands that read an experiment's results (local storage; remote: see the
    module doc)."""
    if is_live(experiment):
        raise TextuneError(
            f"{experiment.root} is being run right now (a textune run or resume holds "
            f"{experiment.root}/{LOCK_FILE}), so its results are not final: results.parquet is written when "
            "the run ends.",
            f"{then[:1].upper()}{then[1:]} when the run has ended; meanwhile textune tensorboard "
            f"{experiment.root} shows its curves.",
        )


def resumable_spec(experiment: Experiment, given: JobSpec | None = None) -> JobSpec:
    """The saved spec of an experiment about to be resumed, after the checks that need no Ray.

    ``given`` is the spec of a ``run --resume``: one that differs from the saved spec is refused
    (TextuneError). Raises :class:`NothingToResume` when every trial has ended.
    """
    spec = load_saved_spec(experiment)
    if given is not None:
        refuse_changed_spec(experiment, spec, given)
    ended = nothing_to_resume(experiment, spec)
    if ended:
        raise NothingToResume(ended)
    return spec


def nothing_to_resume(experiment: Experiment, spec: JobSpec) -> str | None:
    """How every trial of ``experiment`` ended, when none is left to run or retry; else None.

    Read from ``results.parquet`` (written at the end of every run and resume), without Ray. A missing or
    unreadable table says nothing: Ray Tune's own records then decide, in the resume itself.
    """
    from tune_jobs.results.parquet import read_trials

    try:
        trials = read_trials(experiment)
    except (TextuneError, OSError, ValueError):
        return None
    if "status" not in trials or unfinished_trials(trials, spec) or (trials["status"] == TrialStatus.ERRORED).any():
        return None
    counts = trials["status"].value_counts().sort_index()
    return (
        f"the {len(trials)} trial{'s' if len(trials) != 1 else ''} of {experiment.root} ended ("
        + ", ".join(f"{n} {status}" for status, n in counts.items())
        + ")"
    )


def unfinished_trials(trials: pd.DataFrame, spec: JobSpec) -> int:
    """Trials a resume would still run: those recorded unfinished, and those the searcher had not created
    yet when the run stopped (Ctrl-C, the time budget)."""
    recorded = int((trials["status"] == TrialStatus.UNFINISHED).sum()) if "status" in trials else 0
    return recorded + max(0, spec.expected_trials - len(trials))


def refuse_changed_spec(experiment: Experiment, saved: JobSpec, given: JobSpec) -> None:
    """Refuse ``run --resume`` with a spec (job file or ``--set``) that differs from the saved one.

    Ray Tune restores the saved search as it was (its searcher, sample count, space and budgets), so a change
    would be ignored without a word; the refusal lists every differing key with both values.
    """
    saved_keys, given_keys = _flat(saved.model_dump(mode="json")), _flat(given.model_dump(mode="json"))
    differing = [
        f"{key} (saved {_shown(saved_keys.get(key))}, given {_shown(given_keys.get(key))})"
        for key in sorted(set(saved_keys) | set(given_keys))
        if key.split(".")[0] not in LOCATION_KEYS and saved_keys.get(key, ...) != given_keys.get(key, ...)
    ]
    if differing:
        raise TextuneError(
            f"run --resume: the job spec differs from the one {experiment.root} was started with, "
            f"in {'; '.join(differing)}. A resume continues the saved search unchanged.",
            f"Undo those changes to resume it (textune resume {experiment.root} needs no job file), "
            "or run the changed spec as a new experiment with --name NEW_NAME.",
        )


def _refuse_existing(experiment: Experiment, filesystem: pyarrow.fs.FileSystem, path: str) -> None:
    if filesystem.get_file_info(path).type == pyarrow.fs.FileType.NotFound:
        return
    if _held(path):
        raise _held_error(experiment)
    if filesystem.get_file_info(f"{path}/{SPEC_FILE}").type == pyarrow.fs.FileType.NotFound:
        raise TextuneError(
            f"{experiment.root} already exists and holds no textune experiment (no {SPEC_FILE}); "
            "textune does not write into it.",
            "Start the run under another name with --name NEW_NAME, or move that directory away.",
        )
    raise TextuneError(
        f"experiment {experiment.root} already exists; textune does not overwrite it.",
        f"Continue it with: textune resume {experiment.root} (or textune run ... --resume), "
        "or start a new one with --name NEW_NAME.",
    )


def _create_locked(experiment: Experiment, path: str) -> int:
    """Create the experiment directory exclusively and lock it; the lock's file descriptor."""
    # The storage root was just made by the storage probe; made again in case a failing run of another name
    # removed it (empty) in between.
    os.makedirs(os.path.dirname(path), exist_ok=True)
    try:
        os.mkdir(path)
    except FileExistsError:  # another run of this name created it since the check: it won, and runs it
        raise _held_error(experiment) from None
    return _lock(experiment, path)


def _lock(experiment: Experiment, path: str) -> int:
    """Take the experiment's lock without waiting; its file descriptor (closing it releases the lock)."""
    try:
        descriptor = os.open(f"{path}/{LOCK_FILE}", os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise TextuneError(
            f"cannot lock experiment {experiment.root}: {exc}.",
            "Running or resuming an experiment needs write access to its directory.",
        ) from exc
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(descriptor)
        raise _held_error(experiment) from None
    return descriptor


def _held(path: str) -> bool:
    """Whether a live process holds the experiment's lock (tested with a shared lock; nothing is written)."""
    try:
        descriptor = os.open(f"{path}/{LOCK_FILE}", os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(descriptor, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(descriptor)


def _held_error(experiment: Experiment) -> TextuneError:
    return TextuneError(
        f"experiment {experiment.root} is being run right now by another textune process (it "
        f"holds {experiment.root}/{LOCK_FILE}); a second driver would run its trials twice.",
        f"Wait for that run to end (or stop it with Ctrl-C), then: textune resume {experiment.root}; "
        "or start a new experiment with --name NEW_NAME.",
    )


def _missing_directories(directory: Path) -> list[str]:
    """``directory`` and those of its parents that do not exist, outermost first."""
    missing = []
    while not directory.exists() and directory != directory.parent:
        missing.append(str(directory))
        directory = directory.parent
    return missing[::-1]


def _remove_empty(directories: list[str]) -> None:
    """Remove the directories a failed run created, innermost first, where nothing else appeared in them."""
    for directory in reversed(directories):
        with contextlib.suppress(OSError):
            os.rmdir(directory)


def _flat(data: Any, prefix: str = "") -> dict[str, Any]:
    """Nested mappings as dotted keys (``budget.max_tokens``); lists and values as they are."""
    if not isinstance(data, dict):
        return {prefix: data}
    flat: dict[str, Any] = {}
    for key, value in data.items():
        flat.update(_flat(value, f"{prefix}.{key}" if prefix else str(key)))
    return flat


def _shown(value: Any) -> str:
    text = "(absent)" if value is None else str(value)
    return text if len(text) <= SHOWN_VALUE_CHARS else text[: SHOWN_VALUE_CHARS - 3] + "..."
