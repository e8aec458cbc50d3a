"""Bad trial configs are refused with a clear error before any compute; tuner-style values are coerced."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from models.config import parse_trial_config
from models.trial import run_trial
from support.models import RecordingReporter, tiny_config
from textune.errors import TextuneError

BAD_CONFIGS = [
    ({"n_layer": 3}, ['unknown key "n_layer"', 'Did you mean "n_layers"']),
    ({"lr": -0.1}, ['"lr" = -0.1', "expected a number > 0"]),
    ({"n_layers": 0}, ['"n_layers" = 0']),
    ({"family": "gru"}, ['"family"', "transformer", "lstm"]),
    ({"n_heads": 2.5}, ['"n_heads" = 2.5', "fractional"]),
    ({"positions": "rotary", "head_dim": 15}, ["head_dim must be even"]),
    ({"block_size": 10_000}, ["block_size=10000", "too few", "at most"]),
    ({"dataset_dir": "/nonexistent/dataset"}, ['"dataset_dir"', "/nonexistent/dataset", "textune data prepare"]),
]


@pytest.mark.parametrize(("change", "fragments"), BAD_CONFIGS, ids=[next(iter(c)) for c, _ in BAD_CONFIGS])
def test_a_bad_config_is_refused_before_any_compute(
    shakespeare_dataset: str, tmp_path: Path, change: dict, fragments: list[str]
) -> None:
    reporter = RecordingReporter()
    tensorboard_dir = tmp_path / "tb"
    config = {**tiny_config(shakespeare_dataset, "transformer", tensorboard_dir=str(tensorboard_dir)), **change}
    with pytest.raises(TextuneError) as raised:
        run_trial(config, reporter)
    for fragment in fragments:
        assert fragment in raised.value.paragraph()
    assert reporter.reports == [] and not tensorboard_dir.exists()


def test_values_from_a_tuner_are_coerced_to_their_field_types() -> None:
    config = parse_trial_config(
        {"dataset_dir": "d", "n_layers": 3.0, "batch_size": np.int64(16), "lr": np.float32(0.5), "max_tokens": 1e6}
    )
    assert (config.n_layers, config.batch_size, config.max_tokens) == (3, 16, 1_000_000)
    assert all(type(v) is int for v in (config.n_layers, config.batch_size, config.max_tokens))
    assert config.lr == 0.5 and type(config.lr) is float
    assert config.d_model == config.n_heads * config.head_dim


def test_resuming_with_a_different_model_shape_is_refused(shakespeare_dataset: str, tmp_path: Path) -> None:
    from models.run_dir import checkpoint_to_resume, train_in_run_dir

    config = tiny_config(shakespeare_dataset, "lstm", max_tokens=2048)
    train_in_run_dir(config, tmp_path / "run", None)
    with pytest.raises(TextuneError, match="lstm_hidden: 48 -> 64"):
        train_in_run_dir(
            {**config, "lstm_hidden": 64, "max_tokens": 4096},
            tmp_path / "run",
            checkpoint_to_resume(tmp_path / "run", resume=True),
        )


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [({"data": {"source": "synthetic"}, "dataset_dir": "d"}, "both"), ({"lr": 0.1}, "neither")],
    ids=["both", "neither"],
)
def test_a_training_config_names_its_data_exactly_once(raw: dict, fragment: str) -> None:
    from tune_jobs.cli.train_commands import split_data_section

    with pytest.raises(TextuneError, match=fragment):
        split_data_section(raw, "training config t.yaml")


def test_each_key_is_in_one_category_and_its_category_decides_resume_and_hparams() -> None:
    from models.config import CATEGORIES, RESUMABLE_CHANGES, TrialConfig, category_of

    # The two sets the hand-kept lists held before the categories (issue #16, point 6): unchanged.
    assert RESUMABLE_CHANGES == {
        "max_tokens",
        "eval_every_tokens",
        "eval_max_blocks",
        "device",
        "compile",
        "num_threads",
        "tensorboard_dir",
        "sample_tokens",
        "fault_at_tokens",
        "fault_every_attempt",
        "dataset_dir",
        "anneal_at_tokens",
    }
    plumbing = {
        "dataset_dir",
        "device",
        "compile",
        "num_threads",
        "tensorboard_dir",
        "fault_at_tokens",
        "fault_every_attempt",
        "sample_tokens",
        "eval_max_blocks",
        "anneal_at_tokens",
    }
    hparams = set(TrialConfig(dataset_dir="d", num_folds=3, fold=1).hyperparameters())
    assert not hparams & plumbing
    assert hparams >= {
        "num_folds",
        "fold",
        "family",
        "n_layers",
        "n_heads",
        "head_dim",
        "mlp_ratio",
        "dropout",
        "block_size",
        "positions",
        "lstm_hidden",
        "optimizer",
        "lr",
        "momentum",
        "beta1",
        "beta2",
        "weight_decay",
        "warmup_tokens",
        "min_lr_ratio",
        "lr_schedule",
        "cooldown_fraction",
        "cooldown_shape",
        "grad_clip",
        "batch_size",
        "grad_accum",
        "max_tokens",
        "eval_every_tokens",
        "seed",
    }
    assert "fault_at_tokens" not in TrialConfig(dataset_dir="d", fault_at_tokens=5).hyperparameters()
    assert {category_of(key) for key in TrialConfig.model_fields} == set(CATEGORIES.values())
    with pytest.raises(KeyError, match="modle"):
        category_of("modle")
