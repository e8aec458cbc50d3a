"""Run or resume a search: prepare the data once, build the Tuner and run it.

Ray comes from :func:`cluster.connection.connect`: without an address an embedded local Ray bound to
127.0.0.1 with the dashboard off, shut down afterwards; a Ray session that is already up (a test's, or a
submitted job's) is used as it is and left running. Storage is checked writable before anything starts.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow.fs
from ray import tune

from textune.config import dump_yaml
from tune_jobs.experiment import SPEC_FILE, Experiment, experiment_at
from tune_jobs.hparams import write_experiment_config
from tune_jobs.hparams_callback import RunningSessions
from tune_jobs.lifecycle import held_experiment, new_experiment, resumable_spec
from tune_jobs.preflight import check_dataset, check_model, check_model_source, warm_start_points
from tune_jobs.ray_state import check_ray_state
from tune_jobs.search import TIME_ATTR, build_scheduler, build_search_alg
from tune_jobs.space import to_param_space
from tune_jobs.spec import JobSpec, check_trial_configs, fixed_trial_params
from tune_jobs.time_budget import InterruptAtDeadline, interrupts_at_deadline
from tune_jobs.trainable import build_trainable

if TYPE_CHECKING:
    from cluster.connection import ClusterAddress


@contextlib.contextmanager
def trial_slots(spec: JobSpec) -> Iterator[int]:
    """Trials to run at once: the spec's limit, else as many as the connected cluster holds.

    Fails fast when no node could ever host one trial (Ray would leave it pending forever). For the run,
    Ray Tune may keep that many trials pending (unless the user set the limit): other searchers than random
    search keep one pending otherwise, and a big cluster would start one trial per scheduling round.
    """
    from cluster.resources import PENDING_TRIALS_VAR, check_trial_fits, cluster_trial_slots, raise_pending_trial_limit

    check_trial_fits(spec.resources.gpu, spec.resources.cpu)
    slots = spec.max_concurrent_trials or cluster_trial_slots(spec.resources.gpu, spec.resources.cpu)
    chosen_by_user = PENDING_TRIALS_VAR in os.environ
    raise_pending_trial_limit(slots)
    try:
        yield slots
    finally:
        if not chosen_by_user:  # the next run in this process sizes it for its own cluster and spec
            os.environ.pop(PENDING_TRIALS_VAR, None)


def trial_dirname(trial: Any) -> str:
    """Short, stable trial directory names (they are also the TensorBoard run names)."""
    return f"trial_{trial.trial_id}"


def _run_config(spec: JobSpec, experiment: Experiment, callbacks: list[Any]) -> Any:
    from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback

    from cluster.atomic_local_fs import for_ray_tune
    from tune_jobs.progress import ExperimentReporter

    filesystem, path = experiment.filesystem()
    reporter = ExperimentReporter(
        metric_columns=[TIME_ATTR, spec.metric], parameter_columns=list(spec.space), max_report_frequency=10
    )
    return tune.RunConfig(
        name=spec.name,
        storage_path=path.rsplit("/", 1)[0],
        storage_filesystem=for_ray_tune(filesystem),
        progress_reporter=reporter,
        verbose=1,
        callbacks=[CSVLoggerCallback(), JsonLoggerCallback(), *_deadline_callbacks(spec), *callbacks],
        checkpoint_config=tune.CheckpointConfig(
            num_to_keep=spec.keep_checkpoints, checkpoint_score_attribute=spec.metric, checkpoint_score_order=spec.mode
        ),
        failure_config=tune.FailureConfig(max_failures=spec.max_failures),
        # A trial writes its TensorBoard curves into its working directory (tune.get_context().get_trial_dir()),
        # which is on the node that runs it and is not the experiment's storage: without this, the curves never
        # reach the experiment. Uploaded with each report's checkpoint, as the checkpoint is.
        sync_config=tune.SyncConfig(sync_artifacts=True),
    )


def _prepare_before_ray(spec: JobSpec, address: str | None) -> tuple[ClusterAddress, Path]:
    """Check the address (its form; for a cluster, that it answers and takes this process's token; for an
    embedded Ray, that this machine can host a trial), then prepare the dataset (a cache hit when prepared
    before), all before Ray starts: a wrong --address, a GPU job on a machine without GPUs or a model that cannot
    be built (tune_jobs.preflight.check_model_source) fails in seconds, ahead of a possibly long preparation, and
    a bad data source without Ray's start-up first.

    Returns the checked address, for :func:`cluster.connection.connect`, and the dataset directory.
    """
    import ray

    from cluster.connection import check_connectable, resolve_address
    from cluster.resources import check_trial_fits, this_machine_resources
    from data_pipeline.prepare import prepare_dataset

    resolved = resolve_address(address)
    if not ray.is_initialized():  # as in connect: a connection this process already has is used as it is
        check_connectable(resolved)
        if resolved.gcs_address is None:  # an embedded Ray gets this machine's resources: would a trial fit?
            check_trial_fits(spec.resources.gpu, spec.resources.cpu, [this_machine_resources()])
    check_model_source(spec)  # a factory that does not import, a missing pretrained directory: before preparing
    dataset_dir = prepare_dataset(spec.data)
    check_dataset(spec, dataset_dir)  # every block size against the splits trials read, before Ray starts
    check_model(spec, dataset_dir)  # a user's or a Hugging Face model, built and run on one tiny batch
    return resolved, dataset_dir


def _deadline_callbacks(spec: JobSpec) -> list[Any]:
    """The time budget as an interruption that leaves the running trials resumable (tune_jobs.time_budget)."""
    if spec.budget.time_budget_s is None or not interrupts_at_deadline():
        return []
    return [InterruptAtDeadline(spec.budget.time_budget_s)]


def _ray_time_budget(spec: JobSpec) -> float | None:
    """Ray Tune's own time budget, only where the interruption cannot be used (search outside the main thread)."""
    return None if _deadline_callbacks(spec) else spec.budget.time_budget_s


def _trainable(spec: JobSpec, experiment: Experiment, dataset_dir: Path) -> Any:
    """The trainable for the prepared dataset; on remote storage the dataset is uploaded for other nodes."""
    from cluster.dataset_sync import upload_dataset

    filesystem, _ = experiment.filesystem()
    dataset = str(dataset_dir)
    if not isinstance(filesystem, pyarrow.fs.LocalFileSystem):
        dataset = upload_dataset(dataset_dir, spec.storage, spec.storage_options)
    return build_trainable(
        fixed_trial_params(spec, dataset), {"cpu": spec.resources.cpu, "gpu": spec.resources.gpu}, spec.storage_options
    )


def _points_to_evaluate(spec: JobSpec) -> list[dict[str, Any]]:
    return list(spec.search.points_to_evaluate) + warm_start_points(spec)


def _save_spec(spec: JobSpec, experiment: Experiment) -> None:
    filesystem, path = experiment.filesystem()
    filesystem.create_dir(path, recursive=True)
    with filesystem.open_output_stream(f"{path}/{SPEC_FILE}") as handle:
        handle.write(dump_yaml(spec.model_dump(mode="json", exclude_none=True)).encode("utf-8"))


def _remove_staging_leftovers(experiment: Experiment) -> None:
    """Once the search's processes have ended (Ray is shut down), the staging files of writers killed mid-write."""
    from cluster.atomic_local_fs import remove_staging_leftovers

    remove_staging_leftovers(*experiment.filesystem())


def _configure_tune_output() -> None:
    # Ray's newer console output ignores the CLIReporter (and its trimmed columns) unless this is off.
    os.environ["RAY_AIR_NEW_OUTPUT"] = "0"
    # Ray's default TensorBoard logger writes an HParams experiment into every trial directory, which would
    # compete with the experiment-level one (tune_jobs.hparams); the CSV and JSON loggers are kept explicitly.
    os.environ["TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"] = "1"
    # textune snapshots the experiment after every checkpoint on purpose (keep_checkpoints, for exact resume);
    # Ray warns of that as a possible bottleneck, dozens of times in a short search. A user's own value stays.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    # On Ctrl-C Ray Tune tells the user to resume through its Python API (Tuner.restore); the run's summary says
    # `textune resume EXPERIMENT`, which also restores textune's own state, so Ray's hint would mislead.
    tune_logger = logging.getLogger("ray.tune.tune")
    if _drop_tuner_restore_hint not in tune_logger.filters:
        tune_logger.addFilter(_drop_tuner_restore_hint)


def _drop_tuner_restore_hint(record: logging.LogRecord) -> bool:
    return "Tuner.restore" not in record.getMessage()


class TrialStarted(tune.Callback):
    """Notes whether a trial of this run has started: until one has, a failed run removes its experiment."""

    def __init__(self) -> None:
        self.any = False

    def on_trial_start(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self.any = True


def run_job(
    spec: JobSpec, address: str | None = None, then: Callable[[Experiment, JobSpec], None] | None = None
) -> Experiment:
    """Run the search a spec describes into ``STORAGE/NAME``, then call ``then`` (the finish) while the
    experiment is still held (tune_jobs.lifecycle).

    Refuses (TextuneError) an existing experiment and one a live run is creating. A run that fails before its
    first trial starts leaves no experiment behind.
    """
    from cluster.connection import connect
    from tune_jobs.asha_state import scheduler_callbacks

    experiment = experiment_at(spec.storage, spec.name, spec.storage_options)
    started = TrialStarted()
    with new_experiment(experiment, keep=lambda: started.any):
        checked_address, dataset_dir = _prepare_before_ray(spec, address)
        points = _points_to_evaluate(spec)
        _configure_tune_output()
        # Trials report through Ray Tune; their own console output would break up the progress table.
        with connect(checked_address, log_to_driver=False), trial_slots(spec) as slots:
            trainable = _trainable(spec, experiment, dataset_dir)
            _save_spec(spec, experiment)
            # The HParams domains, so the dashboard lists each trial's session from its start (RunningSessions).
            write_experiment_config(*experiment.filesystem(), spec.space)
            scheduler = build_scheduler(spec)
            tuner = tune.Tuner(
                trainable,
                param_space=to_param_space(spec.space),
                tune_config=tune.TuneConfig(
                    search_alg=build_search_alg(spec, points, slots),
                    scheduler=scheduler,
                    num_samples=spec.num_samples,
                    time_budget_s=_ray_time_budget(spec),
                    reuse_actors=True,
                    trial_dirname_creator=trial_dirname,
                ),
                run_config=_run_config(
                    spec, experiment, [*scheduler_callbacks(scheduler), started, RunningSessions(spec.space)]
                ),
            )
            tuner.fit()
        _remove_staging_leftovers(experiment)
        if then is not None:
            then(experiment, spec)
    return experiment


def resume_job(
    experiment: Experiment,
    address: str | None = None,
    then: Callable[[Experiment, JobSpec], None] | None = None,
    given: JobSpec | None = None,
) -> JobSpec:
    """Continue an experiment: unfinished and errored trials, with the searcher's and scheduler's state; then
    call ``then`` (the finish) while the experiment is still held.

    ``given`` is the spec of a ``run --resume``: one that differs from the saved spec is refused. Raises
    TextuneError when another live process holds the experiment, and
    :class:`tune_jobs.lifecycle.NothingToResume`, before Ray starts, when every trial has ended.
    """
    from cluster.atomic_local_fs import for_ray_tune
    from cluster.connection import connect, resolve_address

    resolve_address(address)  # a malformed --address is named even when there is nothing to resume
    with held_experiment(experiment):
        spec = resumable_spec(experiment, given)
        check_ray_state(experiment)  # a damaged snapshot is named here, not 74 lines deep in Ray's restore
        check_trial_configs(spec, f"saved job spec {experiment.root}/{SPEC_FILE}")
        checked_address, dataset_dir = _prepare_before_ray(spec, address)
        _configure_tune_output()
        filesystem, path = experiment.filesystem()
        with connect(checked_address, log_to_driver=False), trial_slots(spec):
            # The scheduler, the searcher and the callbacks (ASHA's records among them) come back from the
            # experiment's tuner.pkl and its latest snapshot.
            tuner = tune.Tuner.restore(
                path,
                _trainable(spec, experiment, dataset_dir),
                resume_unfinished=True,
                resume_errored=True,
                storage_filesystem=for_ray_tune(filesystem),
            )
            tuner.fit()
        _remove_staging_leftovers(experiment)
        if then is not None:
            then(experiment, spec)
    return spec
