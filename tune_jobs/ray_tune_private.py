"""Every use of Ray Tune's private API in textune, fenced in one place: the Tune side of cluster/ray_private.py.

Only tune_jobs speaks Ray Tune, so Tune's private uses live here rather than beside the cluster ones. Each
function says why it is needed and what public API would replace it. ``tests/test_ray_private.py`` checks both
fences against ``cluster.ray_private.RAY_VERSION_WRITTEN_FOR`` and fails when a private use appears elsewhere.
"""

from __future__ import annotations

from typing import Any


def progress_table(reporter: Any, trials: list[Any], done: bool, *sys_info: str) -> str:
    """The text of ``reporter``'s (a ``ray.tune.CLIReporter``) progress table, as its ``report`` would print it.

    Why: ``CLIReporter.report`` prints the table that its private ``_progress_str`` builds in one step, and
    textune rewrites one line of it (``Result logdir``, tune_jobs.progress) before printing.
    Public replacement: a public method returning the table's text (or a hook for the logdir line).
    """
    return str(reporter._progress_str(trials, done, *sys_info))


def function_trainable_class(function: Any) -> type:
    """Ray Tune's Trainable class for a function trainable, to subclass (tune_jobs.trainable.restorable).

    Why: the restore of a trial whose checkpoint was deleted must be intercepted, and Tune builds that class in
    the private ``ray.tune.trainable.function_trainable.wrap_function``.
    Public replacement: a public ``Trainable`` hook for a missing checkpoint, or a public ``wrap_function``.
    """
    from ray.tune.trainable.function_trainable import wrap_function

    return wrap_function(function)


def checkpoint_being_restored(restore_argument: Any) -> Any:
    """The ``ray.tune.Checkpoint`` in what Tune's controller passes to ``Trainable.restore`` (``None`` if none).

    Why: the controller passes a private ``_TrainingResult`` (its checkpoint and metrics), not the checkpoint.
    Public replacement: ``Trainable.restore`` receiving a ``Checkpoint``, as its signature documents.
    """
    return getattr(restore_argument, "checkpoint", None)
