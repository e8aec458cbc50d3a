"""The user's own model, ``family: "package.module:function"``: trained, checkpointed and sampled like a built-in
family, and every mistake in the factory found on one tiny batch as one paragraph naming ``family``.

The shared guarantees (shapes, causality, cache, exact resume, checkpoints, FLOPs) are in
tests/test_model_family_contract.py; the bad-input rows through `textune run` in tests/test_bad_input_battery.py.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from conftest import REPO_ROOT, assert_user_error, completed_trials, run_textune
from models.config import parse_trial_config
from models.families import build_model
from models.plugin import PluginLM, resolve_factory
from textune.errors import TextuneError

FACTORY = "support.plugin_models:gru"


def config_of(family: str) -> dict:
    return {"dataset_dir": "unused", "family": family, "n_layers": 1, "n_heads": 2, "head_dim": 8, "block_size": 16}


def test_the_factory_gets_the_trial_config_and_the_vocabulary_size() -> None:
    model = build_model(parse_trial_config(config_of(FACTORY)), 37)
    assert isinstance(model, PluginLM) and model.block_size == 16
    assert model.inner.embed.weight.shape == (37, 16)  # vocab_size, d_model = n_heads x head_dim
    assert model.inner.gru.num_layers == 1
    # FLOPs count the non-embedding weights: the GRU and the head.
    assert model.non_embedding_params() == sum(p.numel() for p in model.parameters()) - 37 * 16


@pytest.mark.parametrize(
    ("family", "fragments"),
    [
        (
            "no_such_module:build",
            ['"no_such_module:build"', "importing module no_such_module failed", "ModuleNotFoundError"],
        ),
        ("support.plugin_models:missing", ["support.plugin_models", "has no function missing"]),
        (
            "support.plugin_models:no_vocab_size",
            ["no_vocab_size(config: 'TrialConfig')", "cannot be called with (config, vocab_size)"],
        ),
        ("support.plugin_models:refuses_its_sizes", ["the factory raised ValueError: d_model 16 is not a multiple"]),
        ("support.plugin_models:returns_a_dict", ["the factory returned dict, not an nn.Module"]),
        (
            "support.plugin_models:wrong_shape",
            [
                "returned a torch.float32 tensor of shape (2, 37)",
                "logits of shape (2, 8, 37) (B, T, vocab_size) were expected",
            ],
        ),
        (
            "support.plugin_models:sees_the_future",
            ["the model is not causal", "changed the logits of earlier positions"],
        ),
    ],
    ids=[
        "import-error",
        "no-such-function",
        "wrong-signature",
        "factory-raises",
        "not-a-module",
        "wrong-shape",
        "not-causal",
    ],
)
def test_a_broken_factory_is_one_error_naming_family(family: str, fragments: list[str]) -> None:
    with pytest.raises(TextuneError) as raised:
        build_model(parse_trial_config(config_of(family)), 37)
    message = raised.value.paragraph()
    assert message.startswith(f'family "{family}"')
    assert "package.module:function" in message  # the hint says what a factory must be
    for fragment in fragments:
        assert fragment in message, (fragment, message)


@pytest.mark.parametrize("family", ["gru", "pkg.:f", "pkg:mod:f", "pkg.mod:", "1pkg:f"])
def test_a_family_that_is_neither_built_in_nor_a_factory_is_refused_by_the_config(family: str) -> None:
    with pytest.raises(TextuneError, match='"family"'):
        parse_trial_config(config_of(family))


def test_a_factory_module_beside_the_job_imports_without_pythonpath(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The `textune` console script, unlike `python -m`, does not put the working directory on sys.path.
    (tmp_path / "wd_factory_models.py").write_text("def build(config, vocab_size):\n    return None\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [entry for entry in sys.path if entry not in ("", ".", str(tmp_path))])
    monkeypatch.delitem(sys.modules, "wd_factory_models", raising=False)
    factory = resolve_factory("wd_factory_models:build")
    assert factory.__module__ == "wd_factory_models" and sys.path[-1] == str(tmp_path)
    monkeypatch.delitem(sys.modules, "wd_factory_models")


def test_the_factory_check_leaves_the_random_state_alone() -> None:
    from support.plugin_models import gru

    config = parse_trial_config(config_of(FACTORY))
    torch.manual_seed(5)
    build_model(config, 37)  # the factory, then one batch through the model
    after_checked = torch.rand(3)
    torch.manual_seed(5)
    gru(config, 37)  # the factory alone
    assert torch.equal(torch.rand(3), after_checked)


@pytest.mark.slow
def test_textune_train_and_generate_run_a_users_model(shakespeare_file: Path, tmp_path: Path) -> None:
    config = tmp_path / "own.yaml"
    config.write_text(
        f"data: {{source: {shakespeare_file}}}\nfamily: tests.support.plugin_models:gru\n"
        "n_layers: 1\nn_heads: 2\nhead_dim: 8\nblock_size: 16\nbatch_size: 8\nmax_tokens: 1024\n"
        "eval_every_tokens: 512\neval_max_blocks: 4\nsample_tokens: 8\ndevice: cpu\nnum_threads: 1\n",
        encoding="utf-8",
    )
    trained = run_textune("train", str(config), "--run-dir", str(tmp_path / "run"))
    assert trained.returncode == 0, trained.stderr
    assert (tmp_path / "run" / "checkpoints" / "tokens_1024" / "state.pt").is_file()
    generated = [
        run_textune("generate", str(tmp_path / "run"), "--max-new-tokens", "20", "--seed", "3") for _ in range(2)
    ]
    assert generated[0].returncode == 0, generated[0].stderr
    assert len(generated[0].stdout) >= 20  # char tokenizer: a character per token, after the prompt's newline
    assert generated[0].stdout == generated[1].stdout


@pytest.mark.slow
def test_textune_train_with_a_broken_factory_exits_2_and_leaves_no_run_dir(
    shakespeare_file: Path, tmp_path: Path
) -> None:
    config = tmp_path / "own.yaml"
    config.write_text(
        f"data: {{source: {shakespeare_file}}}\nfamily: tests.support.plugin_models:wrong_shape\ndevice: cpu\n",
        encoding="utf-8",
    )
    result = run_textune("train", str(config), "--run-dir", str(tmp_path / "run"))
    # The logits' shape needs the vocabulary, known once the data is prepared: the preparation's log line first.
    assert result.stderr.startswith("INFO data_pipeline.prepare: preparing")
    result.stderr = result.stderr.splitlines()[-1]
    assert_user_error(result, 'family "tests.support.plugin_models:wrong_shape"', "(B, T, vocab_size)")
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_search_trains_a_users_model_in_rays_workers(tmp_path: Path) -> None:
    # The one thing only Ray shows: the factory imports in the trial workers, not only in the driver (Ray puts the
    # driver's working directory on its workers' path). Two trials of 2,048 tokens: Ray's start-up dominates.
    settings = [
        "num_samples=2",
        "max_concurrent_trials=2",
        "data.synthetic.characters=20000",
        "model.family=tests.support.plugin_models:gru",
        "model.n_layers=1",
        "model.block_size=32",
        "model.eval_max_blocks=4",
        "model.warmup_tokens=0",
        "budget.max_tokens=2048",
        "budget.eval_every_tokens=1024",
        "budget.time_budget_s=120",
        "scheduler.grace_period_tokens=1024",
        "scheduler.reduction_factor=2",
        "search.n_initial_points=2",
        f"storage={tmp_path}",
    ]
    result = run_textune(
        "run",
        str(REPO_ROOT / "tune_jobs" / "configs" / "quickstart.yaml"),
        "--name",
        "own",
        *(f"--set={setting}" for setting in settings),
        timeout=280,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert len(list((tmp_path / "own").glob("trial_*/result.json"))) == 2  # both trials ran and reported
    done = completed_trials(tmp_path / "own")  # ASHA may stop one at its rung of 1,024 tokens
    assert done and all(evaluations == 2 for evaluations, _ in done.values())
    generated = run_textune("generate", str(tmp_path / "own"), "--max-new-tokens", "10")
    assert generated.returncode == 0 and len(generated.stdout) >= 10, generated.stderr
