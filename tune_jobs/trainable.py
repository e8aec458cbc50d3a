"""The models trainer as a Ray Tune function trainable.

Ray calls :func:`tune_trial` with the sampled hyperparameters; the fixed ones (dataset directory, budget,
fixed model params) are bound once with ``tune.with_parameters`` so they stay out of every trial's config
and out of the results table. The dataset directory holds memory-mapped shards prepared by the driver, so
opening it in a trial costs no copy and no tokenisation. With ``reuse_actors`` one worker process runs
trial after trial, so torch and the trainer are imported once per slot, not once per trial.
"""

from __future__ import annotations

from typing import Any

import ray
from ray import tune

from cluster.storage import StorageOptions


class TuneReporter:
    """The trainer's reporter interface, forwarding each evaluation (and its checkpoint) to Ray Tune."""

    def __init__(self) -> None:
        self._placement = {
            "node_id": ray.get_runtime_context().get_node_id(),
            "gpu_ids": ",".join(str(gpu) for gpu in ray.get_gpu_ids()),
        }

    def report(self, metrics: dict[str, Any], checkpoint_dir: str | None = None) -> None:
        checkpoint = tune.Checkpoint.from_directory(checkpoint_dir) if checkpoint_dir else None
        tune.report({**metrics, **self._placement}, checkpoint=checkpoint)


def tune_trial(config: dict[str, Any], fixed: dict[str, Any], storage_options: StorageOptions) -> None:
    """Run one trial: fixed + sampled params, TensorBoard curves in the trial's own directory.

    ``fixed["dataset_dir"]`` is the driver's dataset directory, or its URI in remote storage, which is
    downloaded once into this node's dataset cache.
    """
    from cluster.dataset_sync import materialize_dataset
    from models.trial import run_trial

    dataset_dir = str(materialize_dataset(fixed["dataset_dir"], storage_options))
    trial_config = {**fixed, **config, "dataset_dir": dataset_dir,
                    "tensorboard_dir": tune.get_context().get_trial_dir()}
    checkpoint = tune.get_checkpoint()
    if checkpoint is None:
        run_trial(trial_config, TuneReporter())
        return
    # A restored trial (after resume or a worker failure) continues from its latest checkpoint.
    with checkpoint.as_directory() as checkpoint_dir:
        run_trial(trial_config, TuneReporter(), resume_from=checkpoint_dir)


def build_trainable(fixed: dict[str, Any], resources: dict[str, float], storage_options: StorageOptions) -> Any:
    """The trainable the Tuner runs: :func:`tune_trial` with the fixed params bound and resources attached."""
    return tune.with_resources(tune.with_parameters(tune_trial, fixed=fixed, storage_options=storage_options),
                               resources)
