"""The synthetic source: its computed entropy rate is the true one, and its text decodes uniquely."""

from __future__ import annotations

import numpy as np
import pytest

from data_pipeline.config import SyntheticConfig
from data_pipeline.synthetic import MarkovSource

VARIANTS = [SyntheticConfig(), SyntheticConfig(seed=7, words=40, branching=3), SyntheticConfig(seed=3, words=300)]


@pytest.mark.parametrize("config", VARIANTS, ids=lambda c: f"seed{c.seed}-w{c.words}-b{c.branching}")
def test_monte_carlo_entropy_matches_computed_rate(config: SyntheticConfig) -> None:
    source = MarkovSource(config)
    states = source.sample_states(60_000, np.random.default_rng(123))
    text = source.render(states)
    monte_carlo = -source.log_probability(states) / len(text)  # nats per character of this sample
    exact = source.entropy_rate().nats_per_char
    assert abs(monte_carlo - exact) / exact < 0.01, (monte_carlo, exact)


@pytest.mark.parametrize("config", VARIANTS[:2], ids=["default", "small"])
def test_text_decodes_back_to_exactly_one_state_sequence(config: SyntheticConfig) -> None:
    source = MarkovSource(config)
    states = source.sample_states(2_000, np.random.default_rng(0))
    text = source.render(states)
    index = {word: i for i, word in enumerate(source.words)}
    decoded: list[int] = []
    for sentence in text.splitlines():
        assert sentence.endswith(".") and sentence[0].isupper(), sentence
        decoded += [index[word.lower()] for word in sentence[:-1].split(" ")] + [source.eos]
    assert decoded == states.tolist()
    assert all(word.isalpha() and word.islower() for word in source.words)


def test_generation_is_seeded_and_exactly_sized() -> None:
    config = SyntheticConfig(characters=123_457)
    first, again = MarkovSource(config).generate(config.characters), MarkovSource(config).generate(config.characters)
    other = MarkovSource(config.model_copy(update={"seed": 1})).generate(config.characters)
    assert first == again
    assert len(first) == config.characters
    assert other != first


def test_stationary_distribution_is_stationary() -> None:
    source = MarkovSource(SyntheticConfig())
    pi = source.stationary()
    assert np.allclose(pi @ source.transitions, pi, atol=1e-12)
    assert pi.min() >= -1e-12 and np.isclose(pi.sum(), 1.0)
