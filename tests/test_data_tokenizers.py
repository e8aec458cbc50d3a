"""Every tokenizer honours the same contract: round trip, save/load, vocabulary bounds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from data_pipeline.config import TokenizerConfig
from data_pipeline.tokenization import UNKNOWN_CHAR, load_tokenizer, train_tokenizer

KINDS = ["char", "byte", "bpe", "pretrained"]


@pytest.fixture(scope="module")
def corpus(shakespeare_file: Path) -> tuple[str, str]:
    text = shakespeare_file.read_text(encoding="utf-8")[:300_000]
    return text[:270_000], text[270_000:]


@pytest.fixture(scope="module")
def model_tokenizer(corpus: tuple[str, str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model's tokenizer.json as transformers' GPT-2 saves it (byte-level BPE, an end-of-text token its
    post-processor adds), built here with the tokenizers library: nothing is downloaded. textune encodes without
    special tokens, so the round trip below would show an added one."""
    import tokenizers
    from tokenizers import decoders, models, pre_tokenizers, processors, trainers

    backend = tokenizers.Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    backend.train_from_iterator([corpus[0][:60_000]], trainer)
    backend.post_processor = processors.TemplateProcessing(
        single="$A <|endoftext|>", special_tokens=[("<|endoftext|>", backend.token_to_id("<|endoftext|>"))]
    )
    directory = tmp_path_factory.mktemp("saved-model")
    backend.save(str(directory / "tokenizer.json"))
    return directory


@pytest.fixture(params=KINDS)
def config(request: pytest.FixtureRequest) -> TokenizerConfig:
    """Each kind's config; ``pretrained`` reads :func:`model_tokenizer`'s directory."""
    if request.param == "pretrained":
        return TokenizerConfig(kind="pretrained", path=str(request.getfixturevalue("model_tokenizer")))
    return TokenizerConfig(kind=request.param, vocab_size=320 if request.param == "bpe" else None)


def test_decode_encode_round_trips_on_the_corpus(config: TokenizerConfig, corpus: tuple[str, str]) -> None:
    train, held_out = corpus
    tokenizer = train_tokenizer(config, train)
    for text in (train, held_out):
        ids = tokenizer.encode_array(text)
        assert ids.max() < tokenizer.vocab_size
        assert tokenizer.decode(ids) == text
    assert tokenizer.encode(held_out[:500]) == tokenizer.encode_array(held_out[:500]).tolist()


def test_saved_tokenizer_encodes_identically(config: TokenizerConfig, corpus: tuple[str, str], tmp_path: Path) -> None:
    train, held_out = corpus
    tokenizer = train_tokenizer(config, train)
    tokenizer.save(tmp_path)
    loaded = load_tokenizer(tmp_path, config.kind)
    assert (loaded.kind, loaded.vocab_size) == (tokenizer.kind, tokenizer.vocab_size)
    assert np.array_equal(loaded.encode_array(held_out), tokenizer.encode_array(held_out))


def test_char_maps_unseen_characters_to_the_reserved_id() -> None:
    tokenizer = train_tokenizer(TokenizerConfig(kind="char"), "abcab")
    assert tokenizer.vocab_size == 4  # a, b, c + the reserved id 0
    assert tokenizer.encode("abzc€") == [1, 2, 0, 3, 0]
    assert tokenizer.decode(tokenizer.encode("abzc")) == f"ab{UNKNOWN_CHAR}c"


def test_byte_round_trips_undecodable_bytes() -> None:
    raw = b"caf\xe9 \xff\xfe ok"
    text = raw.decode("utf-8", "surrogateescape")
    tokenizer = train_tokenizer(TokenizerConfig(kind="byte"), text)
    assert tokenizer.encode(text) == list(raw)
    assert tokenizer.decode(tokenizer.encode(text)).encode("utf-8", "surrogateescape") == raw


def test_bpe_reaches_its_vocabulary_size_and_compresses(corpus: tuple[str, str]) -> None:
    train, held_out = corpus
    tokenizer = train_tokenizer(TokenizerConfig(kind="bpe", vocab_size=512), train)
    assert tokenizer.vocab_size == 512
    assert len(held_out) / len(tokenizer.encode_array(held_out)) > 1.5  # chars per token
