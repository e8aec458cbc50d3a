"""Ray Tune's own state files of an experiment, checked whole before Ray reads them.

Ray Tune restores a search (``textune resume``) and reads its trials (``textune export``, the end of a run)
from the newest snapshot in the experiment directory. A damaged file there (a full disk, a copy cut short,
an edit) fails deep inside Ray with dozens of lines; here it is named in one paragraph, before Ray starts.
"""

from __future__ import annotations

import json

import pyarrow.fs

from textune.errors import TextuneError
from tune_jobs.experiment import Experiment

# The newest of each (by name) is what Ray reads, and its form: Ray pickles its search generator's state into
# a file named .json.
RAY_STATE_FILES = {
    "experiment_state-*.json": "json",
    "search_gen_state-*.json": "pickle",
    "searcher-state-*.pkl": "pickle",
    "callback-states-*.pkl": "pickle",
    "tuner.pkl": "pickle",
}


def check_ray_state(experiment: Experiment) -> None:
    """Refuse, before Ray starts, an experiment whose newest Ray Tune state files are damaged.

    Ray Tune restores (``textune resume``) and reads (``export``, the end of a run) the newest
    ``experiment_state-*.json`` and beside it the searcher's and the Tuner's state; a damaged one fails deep
    inside Ray with dozens of lines. The JSON files are parsed; the pickles are only checked whole (a pickle
    starts with its protocol marker and ends with the STOP opcode ``.``), never unpickled here.
    """
    filesystem, path = experiment.filesystem()
    found = filesystem.get_file_info(pyarrow.fs.FileSelector(path))
    for pattern, form in RAY_STATE_FILES.items():
        prefix, _, suffix = pattern.partition("*")
        names = sorted(
            info.base_name
            for info in found
            if info.type == pyarrow.fs.FileType.File
            and info.base_name.startswith(prefix)
            and info.base_name.endswith(suffix)
        )
        if not names:
            continue
        with filesystem.open_input_stream(f"{path}/{names[-1]}") as handle:
            content = handle.read()
        problem = None
        if form == "json":
            try:
                if not isinstance(json.loads(content.decode("utf-8")), dict):
                    problem = "it holds no JSON object"
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                problem = f"not valid JSON: {exc}"
        elif not (content[:1] == b"\x80" and content.endswith(b".")):
            problem = f"an incomplete pickle of {len(content)} bytes"
        if problem:
            raise TextuneError(
                f"Ray Tune's state file {experiment.root}/{names[-1]} is damaged ({problem}), so the search "
                "cannot be restored or read from it.",
                "It cannot be rebuilt: copy it back from a backup, or start the search again under a new name "
                "(textune run JOB.yaml --name NEW_NAME); the trials' own results and checkpoints in trial_*/ are "
                "untouched.",
            )
