"""The contract every model family keeps (issue #16.4), one parametrized test per guarantee.

A family joins with one line in FAMILY_CONFIGS: the trial config keys of a tiny model of it. Every family then
has: logits (B, T, V); causality (a token never changes the logits before it); cached generation equal to
uncached generation, token for token; an exactly resumed run on CPU; checkpoints that load back (for training
and for generation) to the model that wrote them; and FLOPs counted from its own parameters.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from models.checkpoint import load_checkpoint, resolve_checkpoint
from models.config import parse_trial_config
from models.families import build_model
from models.generate import generate, load_model
from models.metrics import flops_per_token
from models.run_dir import checkpoint_to_resume, train_in_run_dir
from models.trainer import Trainer
from models.trial import open_dataset
from support.models import HF_GPT2, HF_LLAMA, TINY, read_metrics, tiny_config

VOCAB = 50
FAMILY_CONFIGS: dict[str, dict[str, Any]] = {
    "transformer-learned": {**TINY["transformer"], "positions": "learned"},
    "transformer-rotary": {**TINY["transformer"], "positions": "rotary"},
    "lstm": TINY["lstm"],
    "plugin-gru": {"family": "support.plugin_models:gru", "n_layers": 1, "n_heads": 2, "head_dim": 8, "block_size": 32},
    "hf-gpt2": {"family": "hf", "hf": HF_GPT2, "block_size": 32},
    "hf-llama": {"family": "hf", "hf": HF_LLAMA, "block_size": 32},
    # SAVED_GPT2: a tiny GPT-2 saved with save_pretrained for the vocabulary at hand (the saved_gpt2 fixture).
    "hf-gpt2-lora": {
        "family": "hf",
        "pretrained": "SAVED_GPT2",
        "adapter": "lora",
        "lora_r": 2,
        "lora_dropout": 0.1,
        "block_size": 32,
    },
}
FAMILIES = list(FAMILY_CONFIGS)


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def saved_gpt2(tmp_path_factory: pytest.TempPathFactory) -> Callable[[int], str]:
    """A tiny random GPT-2 saved with save_pretrained, one per vocabulary size: the base of LoRA."""
    saved: dict[int, str] = {}

    def saved_for(vocab: int) -> str:
        if vocab not in saved:
            from transformers import AutoConfig, AutoModelForCausalLM

            keys = {k: v for k, v in HF_GPT2.items() if k != "model_type"}
            torch.manual_seed(21)
            model = AutoModelForCausalLM.from_config(
                AutoConfig.for_model("gpt2", vocab_size=vocab, bos_token_id=None, eos_token_id=None, **keys)
            )
            directory = tmp_path_factory.mktemp(f"gpt2-{vocab}")
            model.save_pretrained(directory)
            saved[vocab] = str(directory)
        return saved[vocab]

    return saved_for


def family_config(family: str, vocab: int, saved_gpt2: Callable[[int], str]) -> dict[str, Any]:
    config = dict(FAMILY_CONFIGS[family])
    if config.get("pretrained") == "SAVED_GPT2":
        config["pretrained"] = saved_gpt2(vocab)
    return config


@pytest.fixture
def tiny_model(saved_gpt2: Callable[[int], str]) -> Callable[..., torch.nn.Module]:
    def build(family: str, **overrides: Any) -> torch.nn.Module:
        torch.manual_seed(0)
        config = parse_trial_config(
            {"dataset_dir": "unused", **family_config(family, VOCAB, saved_gpt2), "block_size": 16, **overrides}
        )
        return build_model(config, VOCAB).eval()

    return build


@pytest.fixture
def trial_config(shakespeare_dataset: str, saved_gpt2: Callable[[int], str]) -> Callable[..., dict[str, Any]]:
    """A trial of a family's tiny model on the dataset: evaluations every 2,048 tokens (tests/support/models.py)."""
    vocab = open_dataset(parse_trial_config({"dataset_dir": shakespeare_dataset})).tokenizer.vocab_size

    def config(family: str, **overrides: Any) -> dict[str, Any]:
        return {
            **tiny_config(shakespeare_dataset, "transformer"),
            **family_config(family, vocab, saved_gpt2),
            **overrides,
        }

    return config


@pytest.mark.parametrize("family", FAMILIES)
def test_logits_have_shape_batch_time_vocabulary_and_never_see_the_future(
    tiny_model: Callable[..., torch.nn.Module], family: str
) -> None:
    model = tiny_model(family)
    idx = torch.randint(0, VOCAB, (2, 16), generator=torch.Generator().manual_seed(1))
    changed = idx.clone()
    changed[:, 9] = (changed[:, 9] + 1) % VOCAB
    with torch.no_grad():
        before, after = model(idx), model(changed)
    assert before.shape == (2, 16, VOCAB)
    assert torch.equal(before[:, :9], after[:, :9])
    assert not torch.allclose(before[:, 9:], after[:, 9:])  # the change is seen from its own position on


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("sampling", [{"temperature": 0.0}, {"temperature": 1.0, "top_k": 5}], ids=["greedy", "top-k"])
def test_cached_generation_equals_uncached_generation(
    tiny_model: Callable[..., torch.nn.Module], family: str, sampling: dict[str, Any]
) -> None:
    model = tiny_model(family, dropout=0.2)  # dropout must be off while generating
    prompt = torch.randint(0, VOCAB, (2, 5), generator=torch.Generator().manual_seed(2))
    # 30 new tokens run past block_size (16), so a windowed model's context slides too.
    runs = [
        generate(model, prompt, 30, generator=torch.Generator().manual_seed(7), use_cache=use_cache, **sampling)
        for use_cache in (True, False)
    ]
    assert runs[0].shape == (2, 35)
    assert torch.equal(runs[0], runs[1])


@pytest.mark.slow  # trains
@pytest.mark.parametrize("family", FAMILIES)
def test_a_resumed_run_repeats_the_uninterrupted_one_exactly_and_counts_flops(
    trial_config: Callable[..., dict[str, Any]], tmp_path: Path, family: str
) -> None:
    # Dropout and grad accumulation make every RNG and counter matter.
    config = trial_config(family, dropout=0.1, grad_accum=2, batch_size=4, max_tokens=6144)
    train_in_run_dir(config, tmp_path / "whole", None)
    with pytest.raises(RuntimeError, match="injected fault"):
        train_in_run_dir({**config, "fault_at_tokens": 3000}, tmp_path / "interrupted", None)
    resume_from = checkpoint_to_resume(tmp_path / "interrupted", resume=True)
    train_in_run_dir({**config, "fault_at_tokens": 3000}, tmp_path / "interrupted", resume_from)
    whole, resumed = read_metrics(tmp_path / "whole"), read_metrics(tmp_path / "interrupted")
    keys = ("tokens", "train_loss", "val_loss", "lr", "best_val_bpc", "flops")
    assert [[m[k] for k in keys] for m in resumed] == [[m[k] for k in keys] for m in whole]
    assert [m["tokens"] for m in whole] == [2048, 4096, 6144]
    model = build_model(parse_trial_config(config), open_dataset(parse_trial_config(config)).tokenizer.vocab_size)
    per_token = flops_per_token(parse_trial_config(config), model)
    assert per_token >= 6 * model.non_embedding_params() > 0
    assert [m["flops"] for m in whole] == [per_token * m["tokens"] for m in whole]
    assert whole[0]["num_params"] == sum(p.numel() for p in model.parameters())
    assert whole[0]["trainable_params"] == sum(p.numel() for p in model.parameters() if p.requires_grad)


@pytest.mark.slow  # trains
@pytest.mark.parametrize("family", FAMILIES)
def test_a_checkpoint_loads_back_to_the_model_that_wrote_it(
    trial_config: Callable[..., dict[str, Any]], tmp_path: Path, family: str
) -> None:
    config = trial_config(family, max_tokens=2048)
    train_in_run_dir(config, tmp_path / "run", None)
    checkpoint = resolve_checkpoint(tmp_path / "run")
    reported = read_metrics(tmp_path / "run")[-1]["val_loss"]
    # For training: the trainer restored from it evaluates to the loss the run reported.
    cfg = parse_trial_config({**config, "tensorboard_dir": None})
    trainer = Trainer(cfg, open_dataset(cfg), torch.device("cpu"))
    trainer.load_state_dict(load_checkpoint(checkpoint)[0])
    assert trainer.evaluate("val") == reported
    # For generation: the same weights, and the same tokens from the same seed.
    loaded = load_model(checkpoint, torch.device("cpu"))
    idx = torch.randint(0, loaded.meta["vocab_size"], (1, 12), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        assert torch.equal(loaded.model(idx), trainer.model.eval()(idx))
    samples = [generate(loaded.model, idx[:, :2], 10, generator=torch.Generator().manual_seed(4)) for _ in range(2)]
    assert torch.equal(samples[0], samples[1])
