"""The checks that need more than the spec, still run before Ray starts: the prepared dataset, a user's model
and warm starts.

:func:`tune_jobs.spec.load_spec` has already checked what the spec alone decides (every value a dimension
produces, every point to evaluate). Here, with the dataset prepared, every block size a trial can get is checked
against the train and val splits it will read (for each validation fold a spec searches), with the very check a
trial runs (models.trial.open_dataset); and the configs a warm start takes from another experiment are checked
like points to evaluate. A user's model (a factory) or a Hugging Face one is checked as far as it can be without
the dataset before the dataset is prepared (:func:`check_model_source`), and built and run on one tiny batch
after (:func:`check_model`). Each failure is one TextuneError naming the key.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from textune.errors import TextuneError
from tune_jobs.space import base_sample, trainer_params
from tune_jobs.spec import JobSpec, check_point, fixed_trial_params

if TYPE_CHECKING:
    from models.config import TrialConfig


def check_dataset(spec: JobSpec, dataset_dir: Path) -> None:
    """Refuse a spec whose largest block size does not fit a split of the prepared dataset at ``dataset_dir``.

    Raises a TextuneError naming ``space.block_size``, ``model.block_size`` or the trial config's default.
    """
    from models.config import parse_trial_config
    from models.trial import open_dataset

    # A split that holds one block of the largest size holds one of every smaller size.
    block_size, label = _largest_block_size(spec)
    config = {
        **fixed_trial_params(spec, str(dataset_dir)),
        **trainer_params(base_sample(spec.space)),
        "block_size": block_size,
    }
    for fold, num_folds in itertools.product(trial_key_values(spec, "fold"), trial_key_values(spec, "num_folds")):
        if (fold is None) != (num_folds is None) or (fold is not None and fold >= num_folds):
            continue  # not a trial config (the spec check refuses such a pair where a trial could get it)
        trial = parse_trial_config({**config, "fold": fold, "num_folds": num_folds}, f"job spec {spec.name}")
        try:
            open_dataset(trial)
        except TextuneError as exc:
            raise TextuneError(f"{label} does not fit the prepared dataset: {exc.message}", exc.hint) from exc


def check_model_source(spec: JobSpec) -> None:
    """Check every model a spec names that is not a built-in family as far as it can be without the dataset
    (models.families.check_model_source: a user's factory imports and takes (config, vocab_size); a Hugging Face
    model's ``pretrained`` directory or ``hf.model_type`` and keys), before the dataset is prepared: a mistake
    there must not cost a preparation first.

    Raises a TextuneError naming ``model.family`` (or ``space.family``), ``model.hf.KEY`` or ``model.pretrained``.
    """
    from models.families import check_model_source as check_source

    for trial in _trial_configs_by_family(spec, "(prepared dataset)"):
        with _named_in(spec):
            check_source(trial)


def check_model(spec: JobSpec, dataset_dir: Path) -> None:
    """Build every model a spec names that is not a built-in family: a user's (``family:
    "package.module:function"``, run on one tiny batch by models.plugin.check_model) or a Hugging Face one
    (``family: hf``), so a factory that returns logits of the wrong shape or a model whose vocabulary differs from
    the prepared dataset's fails here rather than in every trial (:func:`check_model_source` has checked, before
    the dataset was prepared, what needs no dataset).

    Raises a TextuneError naming ``model.family`` (or ``space.family``), ``model.hf.KEY`` or ``model.pretrained``.
    """
    from models.families import build_model
    from models.trial import open_dataset

    for trial in _trial_configs_by_family(spec, str(dataset_dir)):
        with _named_in(spec):
            build_model(trial, open_dataset(trial).tokenizer.vocab_size)


def _trial_configs_by_family(spec: JobSpec, dataset_dir: str) -> Iterator[TrialConfig]:
    """A trial config (the base sample) for each family a spec names that is not built in."""
    from models.config import parse_trial_config
    from models.families import FAMILIES

    config = {**fixed_trial_params(spec, dataset_dir), **trainer_params(base_sample(spec.space))}
    for family in trial_key_values(spec, "family"):
        if family is None or family in FAMILIES:
            continue  # the built-in families need no check
        yield parse_trial_config({**config, "family": family}, f"job spec {spec.name}")


@contextlib.contextmanager
def _named_in(spec: JobSpec) -> Iterator[None]:
    """Name a model's TextuneError by its place in the spec: its message starts with the trial key (family,
    hf.KEY, pretrained), which lies under ``space.`` where family is searched, else under ``model.``."""
    try:
        yield
    except TextuneError as exc:
        searched = exc.message.startswith("family") and "family" in spec.space
        raise TextuneError(("space." if searched else "model.") + exc.message, exc.hint) from exc


def warm_start_points(spec: JobSpec) -> list[dict[str, Any]]:
    """The configs of ``search.warm_start_from``'s best trials, each checked as a point to evaluate.

    Raises a TextuneError naming ``search.warm_start_from[i].KEY`` (i = 0 for the best trial) when one lies
    outside this spec's space or is refused by the trainer.
    """
    from tune_jobs.results.warm_start import top_configs

    source = spec.search.warm_start_from
    if not source:
        return []
    points = top_configs(source, spec.search.warm_start_top_k, list(spec.space))
    for index, point in enumerate(points):
        try:
            check_point(spec, point, f"search.warm_start_from[{index}]")
        except TextuneError as exc:
            raise TextuneError(
                f"{exc.message.rstrip('.')} (search.warm_start_from[{index}] is the config of "
                f"{source}'s best trial number {index + 1}).",
                "Warm-start from an experiment whose configs lie inside this space, or widen space: to hold them.",
            ) from exc
    return points


def _largest_block_size(spec: JobSpec) -> tuple[int, str]:
    """The largest block size a trial can get and how to name it in a message."""
    largest, source = spec.largest_setting("block_size")
    if "block_size" in spec.space:
        dimension = spec.space["block_size"]
        return int(largest), f"space.block_size = {largest} ({dimension.kind} {dimension.values})"
    if "block_size" in spec.model:
        return int(largest), f"model.block_size = {largest}"
    return largest, f"block_size = {largest} ({source}; set model.block_size)"


def trial_key_values(spec: JobSpec, key: str) -> list[Any]:
    """Every value of a trial key a spec gives: searched, fixed under model:, or None."""
    if key in spec.space:
        return spec.space[key].produced_values()
    return [spec.model.get(key)]
