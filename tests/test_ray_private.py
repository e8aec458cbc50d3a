"""textune on Ray's public API: every private use fenced in cluster/ray_private.py, written for one Ray version,
and HyperOpt's handling of diverged trials done through the public Searcher callbacks. Nothing here starts Ray."""

from __future__ import annotations

import math
import os
import re

import pytest
import ray
from ray import tune

from cluster import ray_private
from conftest import REPO_ROOT
from tune_jobs.search import NON_FINITE_PENALTY, FiniteHyperOptSearch

PACKAGES = ("textune", "data_pipeline", "models", "tune_jobs", "cluster")
# Ray's private API is used in these two modules only: the cluster side and the Tune side.
FENCES = (REPO_ROOT / "cluster" / "ray_private.py", REPO_ROOT / "tune_jobs" / "ray_tune_private.py")
# Ray's private modules, its generated protobufs, its module constants, HyperOpt internals once overridden, and
# Ray Tune's private trainable and reporter internals.
PRIVATE_USE = re.compile(
    r"ray\._private|ray\._raylet|ray\.core\.generated|ray_constants|_to_hyperopt_result"
    r"|metric_op|tune\.trainable\.function_trainable|\bwrap_function\b|_progress_str|_TrainingResult"
)


def test_installed_ray_is_the_version_the_private_uses_were_written_for() -> None:
    assert ray.__version__ == ray_private.RAY_VERSION_WRITTEN_FOR, (
        f"Ray {ray.__version__} is installed, but cluster/ray_private.py was written for Ray "
        f"{ray_private.RAY_VERSION_WRITTEN_FOR}. Private APIs change without notice: check every function in "
        "that module against the installed Ray (its tests: test_cluster_local.py, test_cluster_connection.py, "
        "test_cluster_resources.py), then set RAY_VERSION_WRITTEN_FOR to the new version."
    )


def test_no_private_ray_use_outside_the_fence() -> None:
    found = [
        f"{path.relative_to(REPO_ROOT)}:{number}: {line.strip()}"
        for package in PACKAGES
        for path in sorted((REPO_ROOT / package).rglob("*.py"))
        if path not in FENCES
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if PRIVATE_USE.search(line)
    ]
    assert not found, (
        "private Ray uses outside cluster/ray_private.py and tune_jobs/ray_tune_private.py (move them there):\n"
        + "\n".join(found)
    )


def test_the_single_machine_switch_is_restored_even_when_the_start_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    from ray._private import ray_constants  # the constant the fence sets; nowhere else in textune touches it

    monkeypatch.setenv(ray_private.SINGLE_MACHINE_VAR, "1")
    saved = ray_constants.ENABLE_RAY_CLUSTER
    with pytest.raises(RuntimeError, match="start failed"):
        with ray_private.single_machine_ray():
            assert os.environ[ray_private.SINGLE_MACHINE_VAR] == "0" and ray_constants.ENABLE_RAY_CLUSTER is False
            raise RuntimeError("start failed")
    assert os.environ[ray_private.SINGLE_MACHINE_VAR] == "1" and ray_constants.ENABLE_RAY_CLUSTER == saved


@pytest.mark.parametrize(
    "mode, reported, loss",
    [
        ("min", math.inf, NON_FINITE_PENALTY),
        ("min", math.nan, NON_FINITE_PENALTY),
        ("max", -math.inf, NON_FINITE_PENALTY),
        ("max", math.nan, NON_FINITE_PENALTY),
        ("min", 2.5, 2.5),
        ("max", 2.5, -2.5),  # HyperOpt minimises: a maximised metric is negated
    ],
)
def test_hyperopt_learns_a_non_finite_metric_as_the_worst_loss(mode: str, reported: float, loss: float) -> None:
    searcher = FiniteHyperOptSearch(random_state_seed=0)
    searcher.set_search_properties("val_bpc", mode, {"lr": tune.uniform(0.0, 1.0)})
    assert searcher.suggest("t0") is not None
    result = {"val_bpc": reported, "tokens": 1024}
    searcher.on_trial_complete("t0", result)
    assert searcher._hpopt_trials.losses() == [loss]  # what TPE ranks (HyperOpt's record, read for the test only)
    assert result["val_bpc"] is reported  # the caller's result, which Ray Tune records, is untouched
