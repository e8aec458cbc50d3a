"""``family: hf``: Hugging Face causal LMs from a config (random weights) or a local save_pretrained directory.

Nothing is fetched from a hub: tiny GPT-2 and Llama models are built and saved here. The shared guarantees
(shapes, causality, cache, exact resume, checkpoints, FLOPs) are in tests/test_model_family_contract.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from conftest import assert_user_error, run_textune
from models.config import parse_trial_config
from models.families import build_model
from models.generate import generate, load_model
from models.hf import HFCausalLM
from models.run_dir import train_in_run_dir
from models.trial import open_dataset
from support.models import HF_GPT2, HF_LLAMA, read_metrics, tiny_config
from textune.errors import TextuneError

# Imports transformers (seconds) and trains: not for `make test-fast`.
pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def hf_config(**keys: Any) -> dict[str, Any]:
    return {"dataset_dir": "unused", "family": "hf", "block_size": 16, **keys}


@pytest.fixture(scope="module", params=[HF_GPT2, HF_LLAMA], ids=["gpt2", "llama"])
def saved_model(
    request: pytest.FixtureRequest, shakespeare_dataset: str, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """A tiny random model with the dataset's vocabulary, saved with save_pretrained (safetensors)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    vocab = open_dataset(parse_trial_config({"dataset_dir": shakespeare_dataset})).tokenizer.vocab_size
    keys = dict(request.param)
    torch.manual_seed(11)
    model = AutoModelForCausalLM.from_config(
        AutoConfig.for_model(keys.pop("model_type"), vocab_size=vocab, bos_token_id=None, eos_token_id=None, **keys)
    )
    directory = tmp_path_factory.mktemp("pretrained") / request.param["model_type"]
    model.save_pretrained(directory)
    assert (directory / "model.safetensors").is_file()
    return directory


@pytest.mark.parametrize("keys", [HF_GPT2, HF_LLAMA], ids=["gpt2", "llama"])
def test_a_model_from_a_config_has_its_keys_the_vocabulary_the_context_and_textunes_dropout(keys: dict) -> None:
    model = build_model(parse_trial_config(hf_config(hf=keys, dropout=0.25, block_size=2048)), 37)
    assert isinstance(model, HFCausalLM)
    config = model.inner.config
    assert (config.model_type, config.vocab_size, config.hidden_size) == (keys["model_type"], 37, 16)
    assert config.max_position_embeddings >= 2048  # gpt2's default 1024 is raised to block_size
    dropouts = {k: v for k, v in config.to_dict().items() if ("dropout" in k or "pdrop" in k) and isinstance(v, float)}
    assert dropouts and set(dropouts.values()) == {0.25}
    assert model(torch.zeros(1, 4, dtype=torch.long)).shape == (1, 4, 37)


def test_hf_config_keys_beside_hf_are_searchable_and_land_in_it() -> None:
    # A search space samples flat keys: n_embd (gpt2's name) goes into hf:, lr stays textune's.
    config = parse_trial_config(hf_config(hf={"model_type": "gpt2", "n_layer": 1, "n_head": 2}, n_embd=24, lr=0.01))
    assert config.hf == {"model_type": "gpt2", "n_layer": 1, "n_head": 2, "n_embd": 24}
    assert config.lr == 0.01
    assert build_model(config, 37).inner.config.n_embd == 24


def test_hparams_get_the_hf_and_lora_keys_as_flat_scalars() -> None:
    from tensorboard.plugins.hparams import summary_v2

    config = parse_trial_config(
        hf_config(
            pretrained="/models/gpt2",
            adapter="lora",
            n_embd=24,
            lora_target_modules=["c_attn", "c_proj"],
            hf={"rope_parameters": {"rope_theta": 10000.0}},
        )
    )
    hparams = config.hyperparameters()
    assert "hf" not in hparams and "hf.rope_parameters" not in hparams
    assert (hparams["hf.n_embd"], hparams["lora_target_modules"], hparams["adapter"]) == (24, "c_attn,c_proj", "lora")
    summary_v2.hparams_pb(hparams, trial_id="t")  # TensorBoard takes them


@pytest.mark.parametrize(
    ("config", "fragments"),
    [
        (
            hf_config(hf={"model_type": "gtp2"}),
            ["hf.model_type 'gtp2' is not a transformers model type", "did you mean gpt2"],
        ),
        (hf_config(hf={**HF_GPT2, "n_emdb": 8}), ['hf.n_emdb is not a key of gpt2\'s config (did you mean "n_embd"?)']),
        (hf_config(hf={**HF_GPT2, "vocab_size": 8}), ["hf.vocab_size is set by textune"]),
        (
            hf_config(hf={**HF_GPT2, "n_positions": 8}),
            ["block_size 16 is longer than the model's max_position_embeddings (8)"],
        ),
        (hf_config(hf={"model_type": "bert"}), ['hf.model_type "bert": the model is not causal']),
    ],
    ids=["unknown-model-type", "unknown-key", "vocab-size-set", "context-too-short", "not-a-causal-lm"],
)
def test_a_bad_hf_config_is_one_error_naming_the_key(config: dict, fragments: list[str]) -> None:
    from textune.errors import TextuneError

    with pytest.raises(TextuneError) as raised:
        build_model(parse_trial_config(config), 37)
    for fragment in fragments:
        assert fragment in raised.value.paragraph(), (fragment, raised.value.paragraph())


@pytest.mark.parametrize(
    ("config", "fragment"),
    [
        (hf_config(), "family hf needs hf.model_type"),
        (
            {"dataset_dir": "unused", "family": "transformer", "hf": HF_GPT2},
            "hf and pretrained apply to family hf only",
        ),
        (
            {"dataset_dir": "unused", "family": "lstm", "pretrained": "/models/gpt2"},
            "hf and pretrained apply to family hf only",
        ),
    ],
    ids=["hf-without-a-model", "hf-keys-on-the-transformer", "pretrained-on-the-lstm"],
)
def test_the_trial_config_refuses_hf_settings_that_cannot_apply(config: dict, fragment: str) -> None:
    from textune.errors import TextuneError

    with pytest.raises(TextuneError, match=fragment):
        parse_trial_config(config)


def test_a_pretrained_model_loads_the_saved_weights_and_fine_tunes(
    saved_model: Path, shakespeare_dataset: str, tmp_path: Path
) -> None:
    from transformers import AutoModelForCausalLM

    config = {
        **tiny_config(shakespeare_dataset, "transformer"),
        "family": "hf",
        "pretrained": str(saved_model),
        "block_size": 32,
        "max_tokens": 4096,
    }
    cfg = parse_trial_config(config)
    model = build_model(cfg, open_dataset(cfg).tokenizer.vocab_size)
    saved = AutoModelForCausalLM.from_pretrained(saved_model, local_files_only=True).state_dict()
    assert all(torch.equal(tensor, saved[name]) for name, tensor in model.inner.state_dict().items())
    train_in_run_dir(config, tmp_path / "run", None)
    metrics = read_metrics(tmp_path / "run")
    assert [m["status"] for m in metrics] == ["running", "completed"]
    assert metrics[-1]["val_loss"] < metrics[0]["val_loss"]
    loaded = load_model(tmp_path / "run" / "checkpoints" / "tokens_4096", torch.device("cpu"))
    assert loaded.config.pretrained == str(saved_model)
    assert generate(loaded.model, torch.tensor([[1, 2]]), 5).shape == (1, 7)


def test_a_pretrained_directory_that_is_missing_damaged_or_of_another_vocabulary_is_refused(
    saved_model: Path, tmp_path: Path
) -> None:
    from textune.errors import TextuneError

    def refusal(path: Path, vocab: int = 0) -> str:
        cfg = parse_trial_config(hf_config(pretrained=str(path)))
        vocab = vocab or json.loads((saved_model / "config.json").read_text())["vocab_size"]
        with pytest.raises(TextuneError) as raised:
            build_model(cfg, vocab)
        return raised.value.paragraph()

    assert f'pretrained "{tmp_path / "nowhere"}" does not exist' in refusal(tmp_path / "nowhere")
    assert "holds no config.json" in refusal(tmp_path)
    assert "has a vocabulary of" in refusal(saved_model, vocab=7)
    assert "kind: pretrained" in refusal(saved_model, vocab=7)
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    (damaged / "config.json").write_text((saved_model / "config.json").read_text())
    (damaged / "model.safetensors").write_bytes((saved_model / "model.safetensors").read_bytes()[:100])
    assert f'pretrained "{damaged}": transformers could not build a causal LM' in refusal(damaged)
    (damaged / "config.json").write_text("{not json")
    assert f'pretrained "{damaged}": its config.json is unreadable' in refusal(damaged)


def test_textune_train_with_a_missing_pretrained_directory_exits_2_and_leaves_no_run_dir(
    shakespeare_file: Path, tmp_path: Path
) -> None:
    config = tmp_path / "finetune.yaml"
    config.write_text(
        f"data: {{source: {shakespeare_file}}}\nfamily: hf\npretrained: {tmp_path}/no-model\ndevice: cpu\n",
        encoding="utf-8",
    )
    result = run_textune("train", str(config), "--run-dir", str(tmp_path / "run"), env={"HF_HUB_OFFLINE": "1"})
    # Refused before the data: section is prepared (slice K): a missing directory needs no dataset to be found.
    assert "preparing" not in result.stderr
    assert_user_error(result, f'pretrained "{tmp_path}/no-model" does not exist', "save_pretrained")
    assert not (tmp_path / "run").exists()


@pytest.fixture(scope="module")
def model_with_tokenizer(shakespeare_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory as a fine-tuner gets it: a tiny GPT-2 (save_pretrained) beside its own tokenizer.json."""
    from transformers import AutoConfig, AutoModelForCausalLM

    from data_pipeline.tokenization import BpeTokenizer

    directory = tmp_path_factory.mktemp("gpt2-with-tokenizer")
    tokenizer = BpeTokenizer.train(shakespeare_file.read_text(encoding="utf-8")[:60_000], 300)
    tokenizer.save(directory)
    keys = {k: v for k, v in HF_GPT2.items() if k != "model_type"}
    torch.manual_seed(12)
    AutoModelForCausalLM.from_config(
        AutoConfig.for_model("gpt2", vocab_size=tokenizer.vocab_size, bos_token_id=None, eos_token_id=None, **keys)
    ).save_pretrained(directory)
    return directory


def prepare_with(source: Path, out_dir: Path, tokenizer_path: Path) -> str:
    from data_pipeline.config import DataConfig
    from data_pipeline.prepare import prepare_dataset
    from textune.config import validate

    config = validate(
        DataConfig,
        {"source": str(source), "tokenizer": {"kind": "pretrained", "path": str(tokenizer_path)}},
        "test data",
    )
    return str(prepare_dataset(config, out_dir=out_dir))


def test_the_pretrained_tokenizer_is_read_from_the_model_directory_and_keys_the_cache_by_content(
    model_with_tokenizer: Path, shakespeare_file: Path, tmp_path: Path
) -> None:
    from data_pipeline.reader import TokenDataset

    excerpt = tmp_path / "excerpt.txt"
    text = shakespeare_file.read_text(encoding="utf-8")[:20_000]
    excerpt.write_text(text, encoding="utf-8")
    first = prepare_with(excerpt, tmp_path / "datasets", model_with_tokenizer)
    dataset = TokenDataset.open(Path(first))
    assert dataset.manifest.tokenizer.kind == "pretrained"
    assert dataset.tokenizer.vocab_size == json.loads((model_with_tokenizer / "config.json").read_text())["vocab_size"]
    assert dataset.tokenizer.decode(dataset.tokenizer.encode(text)) == text
    assert dataset.chars_per_token("val") > 1.1  # merged tokens: val_bpc divides by this to stay per character
    # The same file elsewhere is the same dataset; a changed file is another one.
    moved = tmp_path / "moved"
    moved.mkdir()
    (moved / "tokenizer.json").write_bytes((model_with_tokenizer / "tokenizer.json").read_bytes())
    assert prepare_with(excerpt, tmp_path / "datasets", moved / "tokenizer.json") == first
    from data_pipeline.tokenization import BpeTokenizer

    BpeTokenizer.train(text, 280).save(moved)
    assert prepare_with(excerpt, tmp_path / "datasets", moved) != first


def test_a_missing_pretrained_tokenizer_is_one_error_naming_the_path(shakespeare_file: Path, tmp_path: Path) -> None:
    from textune.errors import TextuneError

    with pytest.raises(TextuneError, match=f'data.tokenizer.path "{tmp_path}" holds no tokenizer.json'):
        prepare_with(shakespeare_file, tmp_path / "datasets", tmp_path)


def test_fine_tuning_with_the_models_own_tokenizer_trains_and_generates(
    model_with_tokenizer: Path, shakespeare_file: Path, tmp_path: Path
) -> None:
    dataset = prepare_with(shakespeare_file, tmp_path / "datasets", model_with_tokenizer)
    config = {
        **tiny_config(dataset, "transformer"),
        "family": "hf",
        "pretrained": str(model_with_tokenizer),
        "block_size": 32,
        "max_tokens": 2048,
    }
    train_in_run_dir(config, tmp_path / "run", None)
    [metrics] = read_metrics(tmp_path / "run")
    assert metrics["status"] == "completed" and 0 < metrics["val_bpc"] < 20
    loaded = load_model(tmp_path / "run" / "checkpoints" / "tokens_2048", torch.device("cpu"))
    assert loaded.tokenizer.kind == "pretrained"
    prompt = torch.tensor([loaded.tokenizer.encode("ROMEO:")])
    assert isinstance(loaded.tokenizer.decode(generate(loaded.model, prompt, 8)[0].tolist()), str)


def recipe_trial(name: str) -> tuple[dict[str, Any], Any]:
    """(a sampled point, its trial config) of the recipe tune_jobs/configs/NAME.yaml."""
    from conftest import REPO_ROOT
    from tune_jobs.space import base_sample, trainer_params
    from tune_jobs.spec import fixed_trial_params, load_spec

    spec = load_spec(REPO_ROOT / "tune_jobs" / "configs" / f"{name}.yaml")
    sample = trainer_params(base_sample(spec.space))
    return sample, parse_trial_config({**fixed_trial_params(spec, "unused"), **sample})


def test_the_hf_gpt2_recipe_searches_gpt2s_own_keys_beside_textunes() -> None:
    sample, config = recipe_trial("hf-gpt2-scratch")
    assert config.family == "hf"
    assert config.hf == {"model_type": "gpt2", "n_head": 4, "n_embd": sample["n_embd"], "n_layer": sample["n_layer"]}
    assert (config.lr, config.batch_size) == (sample["lr"], sample["batch_size"])


def test_the_lora_recipe_searches_rank_and_scale() -> None:
    sample, config = recipe_trial("finetune-lora")
    assert (config.family, config.adapter, config.hf) == ("hf", "lora", {})
    assert (config.lora_r, config.lora_alpha, config.lr) == (sample["lora_r"], sample["lora_alpha"], sample["lr"])


def test_the_nested_adapter_section_maps_onto_the_searchable_lora_keys(tmp_path: Path) -> None:
    base = {"dataset_dir": "unused", "family": "hf", "pretrained": str(tmp_path)}
    nested = {"kind": "lora", "r": 4, "alpha": 32, "dropout": 0.1, "target_modules": ["c_attn"]}
    config = parse_trial_config({**base, "adapter": nested})
    assert (config.adapter, config.lora_r, config.lora_alpha, config.lora_dropout, config.lora_target_modules) == (
        "lora",
        4,
        32,
        0.1,
        ["c_attn"],
    )
    for section, words in [
        ({"kind": "lora", "rank": 4}, ["adapter.rank", "r, alpha, dropout, target_modules"]),
        ({"r": 4}, ["adapter.kind must be lora"]),
    ]:
        with pytest.raises(TextuneError) as error:
            parse_trial_config({**base, "adapter": section})
        assert all(word in str(error.value) for word in words), str(error.value)
    with pytest.raises(TextuneError, match="adapter.r and lora_r are both set"):
        parse_trial_config({**base, "adapter": {"kind": "lora", "r": 4}, "lora_r": 8})


def test_lora_trains_only_the_adapter_and_its_checkpoints_hold_only_the_adapter(
    saved_model: Path, shakespeare_dataset: str, tmp_path: Path
) -> None:
    from models.checkpoint import load_checkpoint
    from models.lora import BASE_SHA256, base_checksum

    config = {
        **tiny_config(shakespeare_dataset, "transformer"),
        "family": "hf",
        "pretrained": str(saved_model),
        "adapter": "lora",
        "lora_r": 4,
        "lora_alpha": 8,
        "block_size": 32,
        "max_tokens": 2048,
        "lr": 3e-2,
    }
    train_in_run_dir(config, tmp_path / "run", None)
    [metrics] = read_metrics(tmp_path / "run")
    assert 0 < metrics["trainable_params"] < metrics["num_params"] / 10  # the trainable share is reported
    checkpoint = tmp_path / "run" / "checkpoints" / "tokens_2048"
    state, _ = load_checkpoint(checkpoint)
    weights = {k: v for k, v in state["model"].items() if k != BASE_SHA256}
    assert weights and all(".lora_A." in k or ".lora_B." in k for k in weights)
    assert sum(v.numel() for v in weights.values()) == metrics["trainable_params"]
    assert state["model"][BASE_SHA256] == base_checksum(str(saved_model))
    assert any(v.abs().sum() > 0 for k, v in weights.items() if ".lora_B." in k)  # it trained (B starts at 0)
    # Generation applies the adapter to the base rebuilt from its path: not the base's logits.
    loaded = load_model(checkpoint, torch.device("cpu"))
    base = build_model(parse_trial_config({**config, "adapter": None}), loaded.meta["vocab_size"])
    idx = torch.tensor([[1, 2, 3, 4]])
    with torch.no_grad():
        assert not torch.allclose(loaded.model(idx), base.eval()(idx))


def test_an_adapter_checkpoint_refuses_a_base_that_changed(
    saved_model: Path, shakespeare_dataset: str, tmp_path: Path
) -> None:
    import shutil

    from textune.errors import TextuneError

    base = tmp_path / "base"
    shutil.copytree(saved_model, base)
    config = {
        **tiny_config(shakespeare_dataset, "transformer"),
        "family": "hf",
        "pretrained": str(base),
        "adapter": "lora",
        "block_size": 32,
        "max_tokens": 1024,
        "eval_every_tokens": 1024,
    }
    train_in_run_dir(config, tmp_path / "run", None)
    config_json = json.loads((base / "config.json").read_text())
    (base / "config.json").write_text(json.dumps({**config_json, "initializer_range": 0.5}))
    with pytest.raises(TextuneError, match=f'pretrained "{base}" is not the base model this adapter was trained on'):
        load_model(tmp_path / "run" / "checkpoints" / "tokens_1024", torch.device("cpu"))


def test_a_lora_target_that_matches_no_module_is_one_error_naming_the_key(saved_model: Path) -> None:
    from textune.errors import TextuneError

    vocab = json.loads((saved_model / "config.json").read_text())["vocab_size"]
    config = parse_trial_config(
        hf_config(pretrained=str(saved_model), adapter="lora", lora_target_modules=["attention_of_nothing"])
    )
    with pytest.raises(TextuneError) as raised:
        build_model(config, vocab)
    message = raised.value.paragraph()
    assert "lora_target_modules ['attention_of_nothing']" in message and "its linear layers are:" in message


def test_lora_needs_a_saved_base_model() -> None:
    from textune.errors import TextuneError

    with pytest.raises(TextuneError, match="adapter lora fine-tunes a saved model"):
        parse_trial_config(hf_config(hf=HF_GPT2, adapter="lora"))


def test_a_pretrained_path_is_made_absolute_where_it_is_given(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # Trials run in their own directories (and nodes): a relative path or ~ must not depend on where they start.
    monkeypatch.chdir(tmp_path)
    assert parse_trial_config(hf_config(pretrained="models/gpt2")).pretrained == str(tmp_path / "models" / "gpt2")
    assert parse_trial_config(hf_config(pretrained="~/gpt2")).pretrained == str(Path.home() / "gpt2")
