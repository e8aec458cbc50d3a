"""The model families' shared contract: causality, the generation cache, sampling, parameter counts."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from data_pipeline.tokenization import CharTokenizer
from models.config import parse_trial_config
from models.families import build_model
from models.generate import generate, next_token, sample_text
from models.metrics import distinct_n, flops_per_token
from support.models import FAMILIES, TINY

VOCAB = 50
VARIANTS = [("transformer", {"positions": "learned"}), ("transformer", {"positions": "rotary"}), ("lstm", {})]
VARIANT_IDS = ["transformer-learned", "transformer-rotary", "lstm"]


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def tiny_model(family: str, **overrides: object) -> torch.nn.Module:
    torch.manual_seed(0)
    config = parse_trial_config({"dataset_dir": "unused", **TINY[family], "block_size": 16, **overrides})
    return build_model(config, VOCAB).eval()


@pytest.mark.parametrize(("family", "overrides"), VARIANTS, ids=VARIANT_IDS)
def test_changing_a_future_token_never_changes_earlier_logits(family: str, overrides: dict) -> None:
    model = tiny_model(family, **overrides)
    idx = torch.randint(0, VOCAB, (2, 16), generator=torch.Generator().manual_seed(1))
    changed = idx.clone()
    changed[:, 9] = (changed[:, 9] + 1) % VOCAB
    with torch.no_grad():
        before, after = model(idx), model(changed)  # (B, T, V)
    assert torch.equal(before[:, :9], after[:, :9])
    assert not torch.allclose(before[:, 9:], after[:, 9:])  # the change is seen from its own position on


@pytest.mark.parametrize(("family", "overrides"), VARIANTS, ids=VARIANT_IDS)
@pytest.mark.parametrize(
    "sampling",
    [{"temperature": 0.0}, {"temperature": 1.0, "top_k": 5}, {"temperature": 0.9, "top_p": 0.8}],
    ids=["greedy", "top-k", "top-p"],
)
def test_cached_generation_equals_uncached_generation_token_for_token(
    family: str, overrides: dict, sampling: dict
) -> None:
    model = tiny_model(family, dropout=0.2, **overrides)  # dropout must be off while generating
    prompt = torch.randint(0, VOCAB, (3, 5), generator=torch.Generator().manual_seed(2))
    # 40 new tokens run past block_size (16), so the Transformer's window slides too.
    runs = [
        generate(model, prompt, 40, generator=torch.Generator().manual_seed(7), use_cache=use_cache, **sampling)
        for use_cache in (True, False)
    ]
    assert runs[0].shape == (3, 45)
    assert torch.equal(runs[0], runs[1])
    assert torch.equal(runs[0][:, :5], prompt)
    if sampling["temperature"] > 0:
        other_seed = generate(model, prompt, 40, generator=torch.Generator().manual_seed(8), **sampling)
        assert not torch.equal(other_seed, runs[0])


@pytest.mark.parametrize("family", ["transformer", "lstm"])
def test_sample_text_streams_the_text_it_returns_and_samples_as_generate_does(family: str) -> None:
    model = tiny_model(family)
    # 49 characters and the unknown id 0 (U+FFFD), which the stream holds back as an unfinished character.
    tokenizer = CharTokenizer("".join(sorted("abcdefghijklmnopqrstuvwxyz .,;:!?'-(\néèàüöäßçñ€¶§")))
    assert tokenizer.vocab_size == VOCAB
    prompt = torch.tensor([[1, 2, 0]])
    pieces: list[str] = []
    sample = sample_text(
        model, tokenizer, prompt, 60, generator=torch.Generator().manual_seed(3), temperature=1.0, on_text=pieces.append
    )
    same = generate(model, prompt, 60, temperature=1.0, generator=torch.Generator().manual_seed(3))
    assert torch.equal(sample.ids, same)  # (1, 63): the prompt and its continuation
    assert sample.text == tokenizer.decode(same[0].tolist())
    assert "".join(pieces) == sample.text
    assert pieces[0] == tokenizer.decode([1, 2, 0]) and len(pieces) == 1 + 60 + 1  # prompt, tokens, the rest


def test_top_k_and_top_p_only_ever_pick_the_allowed_tokens() -> None:
    logits = torch.tensor([[4.0, 3.0, 2.0, -5.0, -5.0]]).expand(200, -1)  # probabilities ~.67 .24 .09 0 0
    generator = torch.Generator().manual_seed(0)
    assert set(next_token(logits, 1.0, 2, None, generator).flatten().tolist()) == {0, 1}
    assert set(next_token(logits, 1.0, None, 0.5, generator).flatten().tolist()) == {0}
    assert set(next_token(logits, 1.0, None, 0.95, generator).flatten().tolist()) == {0, 1, 2}
    assert set(next_token(logits, 0.0, None, None, generator).flatten().tolist()) == {0}


def test_distinct_n_counts_unique_ngrams() -> None:
    assert distinct_n([[1, 2, 1, 2]], 1) == 0.5
    assert distinct_n([[1, 2, 1, 2]], 2) == 2 / 3
    assert distinct_n([[1], []], 2) == 0.0


@pytest.mark.parametrize("family", FAMILIES)
def test_embeddings_are_tied_and_flops_count_non_embedding_weights(family: str) -> None:
    model = tiny_model(family)
    assert model.lm_head.weight is model.wte.weight
    config = parse_trial_config({"dataset_dir": "unused", **TINY[family], "block_size": 16})
    attention = 12 * config.n_layers * config.n_heads * config.head_dim * 16 if family == "transformer" else 0
    assert flops_per_token(config, model) == 6 * model.non_embedding_params() + attention
    assert 0 < model.non_embedding_params() < sum(p.numel() for p in model.parameters())


@pytest.mark.slow
def test_the_models_package_never_imports_ray() -> None:
    # A fresh interpreter: this test process may have imported Ray for other packages' tests.
    code = (
        "import sys, models.trial, models.run_dir, models.generate, models.tensorboard_log; "
        "print(sorted(m for m in sys.modules if m == 'ray' or m.startswith('ray.')))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
