"""The models trainer as a Ray Tune function trainable.

Ray calls :func:`tune_trial` with the sampled hyperparameters; the fixed ones (dataset directory, budget,
fixed model params) are bound once with ``tune.with_parameters`` so they stay out of every trial's config
and out of the results table. The dataset directory holds memory-mapped shards prepared by the driver, so
opening it in a trial costs no copy and no tokenisation. With ``reuse_actors`` one worker process runs
trial after trial, so torch and the trainer are imported once per slot, not once per trial.

A trial Ray restarts (after a crash, a lost node or ``textune resume``) continues from its newest checkpoint
whose checksum holds: a damaged latest checkpoint is skipped, with a warning, for the one before it. Every
report says which checkpoint the run started from (``restored_from_tokens``, 0 for a fresh start), so the
progress a fault cost can be read from the results, and when it was sent (``reported_at``, unix seconds with
sub-second precision). A trial whose latest checkpoint was deleted from storage
restarts from an older one, or from scratch, with a warning (:func:`restorable`).

A trial whose config the trainer refuses (a TextuneError from its config, device or dataset checks) would fail the same
way on every retry, so it is not retried: it reports once, ``status: errored`` with the message in ``error`` and
an infinite metric (so HyperOpt learns the region is bad), and ends. The pre-flight checks (tune_jobs.spec,
tune_jobs.preflight) refuse such specs before Ray starts; this is the net for what they cannot see.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.fs
import ray
from ray import tune

from cluster.storage import StorageOptions
from models.status import TrialStatus
from textune.errors import TextuneError
from tune_jobs.space import trainer_params

logger = logging.getLogger(__name__)

# Ray names a trial's checkpoints checkpoint_<index> in the trial directory, the index growing with each one.
CHECKPOINT_NAME = re.compile(r"^checkpoint_(\d+)$")


class TuneReporter:
    """The trainer's reporter interface, forwarding each evaluation (and its checkpoint) to Ray Tune."""

    def __init__(self, restored_from_tokens: int = 0) -> None:
        self._extra = {
            "node_id": ray.get_runtime_context().get_node_id(),
            "gpu_ids": ",".join(str(gpu) for gpu in ray.get_gpu_ids()),
            "restored_from_tokens": restored_from_tokens,
        }

    def report(self, metrics: dict[str, Any], checkpoint_dir: str | None = None) -> None:
        checkpoint = tune.Checkpoint.from_directory(checkpoint_dir) if checkpoint_dir else None
        # Ray's own `timestamp` has whole seconds; the order in which results of different trials reached the
        # scheduler (what an ASHA rung compares) needs finer: unix seconds, float.
        tune.report({**metrics, **self._extra, "reported_at": time.time()}, checkpoint=checkpoint)


def _checkpoint_index(path: str) -> int | None:
    match = CHECKPOINT_NAME.match(path.rstrip("/").rpartition("/")[2])
    return int(match.group(1)) if match else None


def checkpoints_newest_first(latest: tune.Checkpoint) -> list[tune.Checkpoint]:
    """``latest`` and the trial's older checkpoints beside it (those Ray kept), newest first."""
    latest_index = _checkpoint_index(latest.path)
    if latest_index is None:  # not in a trial directory: nothing to fall back to
        return [latest]
    parent = latest.path.rstrip("/").rpartition("/")[0]
    found = _filesystem(latest).get_file_info(pyarrow.fs.FileSelector(parent, allow_not_found=True))
    older = sorted(
        (index, info.path)
        for info in found
        if info.type == pyarrow.fs.FileType.Directory
        and (index := _checkpoint_index(info.path)) is not None
        and index < latest_index
    )
    return [latest, *(tune.Checkpoint(path, latest.filesystem) for _, path in reversed(older))]


def intact_checkpoints(latest: tune.Checkpoint) -> Iterator[tuple[str, dict[str, Any]]]:
    """(local directory, metadata) of each checkpoint from ``latest`` back whose checksum holds, newest first.

    Each directory exists while the caller handles it (a remote checkpoint is downloaded for that long).
    """
    from models.checkpoint import verify

    for checkpoint in checkpoints_newest_first(latest):
        with checkpoint.as_directory() as checkpoint_dir:
            try:
                meta = verify(Path(checkpoint_dir))
            except TextuneError as exc:
                logger.warning("skipping a damaged checkpoint of this trial: %s", exc.message)
                continue
            yield checkpoint_dir, meta


def refused_config(trial_config: dict[str, Any]) -> str | None:
    """The trainer's message if it refuses ``trial_config``: its values, a device this machine lacks (``cuda``
    without a GPU), or its block size for the dataset. These are every check the trainer makes before it
    trains (models.trial.run_trial), so a TextuneError of training itself is never taken for a refusal."""
    from models.config import parse_trial_config
    from models.trainer import resolve_device
    from models.trial import open_dataset

    try:
        config = parse_trial_config(trial_config)
        resolve_device(config.device)
        open_dataset(config)
    except TextuneError as exc:
        return exc.paragraph()
    return None


def report_refused_config(message: str) -> None:
    """End a trial whose config cannot work: one final report and no exception, so Ray does not retry it."""
    inf = float("inf")
    TuneReporter().report(
        {
            "tokens": 0,
            "status": TrialStatus.ERRORED,
            "error": message,
            "val_loss": inf,
            "val_ppl": inf,
            "val_bpc": inf,
            "best_val_bpc": inf,
        }
    )


def tune_trial(config: dict[str, Any], fixed: dict[str, Any], storage_options: StorageOptions) -> None:
    """Run one trial: fixed + sampled params (less ``ignored_`` control knobs), TensorBoard curves in the trial's
    own directory (its HParams session is the driver's: tune_jobs.hparams).

    ``fixed["dataset_dir"]`` is the driver's dataset directory, or its URI in remote storage, which is
    downloaded once into this node's dataset cache.
    """
    from cluster.dataset_sync import materialize_dataset
    from models.trainer import use_tensor_cores
    from models.trial import run_trial

    use_tensor_cores()  # process-wide; a reused actor's later trials find it set
    dataset_dir = str(materialize_dataset(fixed["dataset_dir"], storage_options))
    trial_config = {
        **fixed,
        **trainer_params(config),
        "dataset_dir": dataset_dir,
        "tensorboard_dir": tune.get_context().get_trial_dir(),
    }
    refusal = refused_config(trial_config)
    if refusal is not None:
        logger.error("this trial's config cannot work, so it ends without retries: %s", refusal)
        report_refused_config(refusal)
        return
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        # A restored trial (after resume or a worker failure) continues from its newest intact checkpoint.
        for checkpoint_dir, meta in intact_checkpoints(checkpoint):
            run_trial(
                trial_config,
                TuneReporter(restored_from_tokens=meta["tokens"]),
                resume_from=checkpoint_dir,
                hparams_session=False,
            )
            return
        logger.warning(
            "no intact checkpoint of this trial is left (latest: %s); it starts again from scratch", checkpoint.path
        )
    run_trial(trial_config, TuneReporter(), hparams_session=False)


def restorable(function: Any) -> type:
    """The Ray Tune class of a function trainable, restoring a trial whose latest checkpoint is gone.

    Ray refuses to restore a trial from a checkpoint that no longer exists on storage (deleted between an
    interrupt and ``textune resume``): the restore fails, is retried ``max_failures`` times and the trial ends
    errored. Here such a trial starts from its newest older checkpoint still on storage, else from scratch,
    with a warning; the function then checks that checkpoint's checksum as for any restore.
    """
    from tune_jobs.ray_tune_private import checkpoint_being_restored, function_trainable_class

    class RestoreWhatIsLeft(function_trainable_class(function)):  # type: ignore[misc]
        def restore(self, checkpoint_path: Any) -> None:
            checkpoint = checkpoint_being_restored(checkpoint_path)
            if checkpoint is None or _exists(checkpoint):
                super().restore(checkpoint_path)
                return
            older = [c for c in checkpoints_newest_first(checkpoint)[1:] if _exists(c)]
            if not older:
                logger.warning(
                    "the checkpoint to restore this trial from is gone from storage (%s), and no older "
                    "one is left; the trial starts again from scratch",
                    checkpoint.path,
                )
                return
            logger.warning(
                "the checkpoint to restore this trial from is gone from storage (%s); it continues from the older %s",
                checkpoint.path,
                older[0].path,
            )
            super().restore(type(checkpoint_path)(checkpoint=older[0], metrics=checkpoint_path.metrics))

    return RestoreWhatIsLeft


def _exists(checkpoint: tune.Checkpoint) -> bool:
    return _filesystem(checkpoint).get_file_info(checkpoint.path).type != pyarrow.fs.FileType.NotFound


def _filesystem(checkpoint: tune.Checkpoint) -> pyarrow.fs.FileSystem:
    # Typed Optional, but a Checkpoint given no file system infers one from its path in __init__.
    assert checkpoint.filesystem is not None
    return checkpoint.filesystem


def build_trainable(fixed: dict[str, Any], resources: dict[str, float], storage_options: StorageOptions) -> Any:
    """The trainable the Tuner runs: :func:`tune_trial` with the fixed params bound and resources attached."""
    function = tune.with_parameters(tune_trial, fixed=fixed, storage_options=storage_options)
    return tune.with_resources(restorable(function), resources)
