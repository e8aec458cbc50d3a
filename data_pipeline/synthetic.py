"""The ``synthetic`` corpus: English-like sentences from a seeded word-level Markov source.

States are the words plus an end-of-sentence state (EOS). A sentence starts after EOS with a capitalised
word, words are joined by single spaces and EOS renders as ``".\\n"``. Words are lowercase letters only, so the
text splits back into exactly one state sequence (uniquely decodable), and the entropy of the text per
character is the entropy of the chain per step divided by the expected characters per step:

    H_step = sum_a pi(a) * H(P[a, :])                 (pi: stationary distribution, exact)
    L_step = sum_a pi(a) * sum_b P[a, b] * len(piece(a, b))
    floor  = H_step / L_step  nats per character      (renewal-reward theorem)

Each word has only ``branching`` successors (plus sometimes EOS), so a small model learns the whole table
quickly and can get near the floor on a CPU in minutes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from data_pipeline.config import SyntheticConfig

_ONSETS = ["b", "c", "d", "f", "g", "h", "l", "m", "n", "p", "r", "s", "t", "w", "th", "st", "br", "gr", "sh"]
_VOWELS = ["a", "e", "i", "o", "u", "ea", "ou", "ai"]
_CODAS = ["", "", "n", "r", "s", "t", "nd", "ll", "st"]
_ENDING_WORD_FRACTION = 0.48  # share of words that may end a sentence ...
_EOS_SHARE = 0.25  # ... and the probability that they do: sentences average ~8 words
_GENERATOR_VERSION = 1  # bump when the same config would render different text


@dataclass(frozen=True)
class EntropyRate:
    """The true source's entropy per character (the lowest achievable loss)."""

    nats_per_char: float

    @property
    def bits_per_char(self) -> float:
        return self.nats_per_char / math.log(2)


class MarkovSource:
    """A word-level Markov chain over ``words`` + EOS; state ``eos`` (the last index) starts every sentence."""

    def __init__(self, config: SyntheticConfig) -> None:
        self.config = config
        rng = np.random.default_rng([config.seed, _GENERATOR_VERSION])
        self.words = _make_words(rng, config.words)
        self.eos = len(self.words)
        self.transitions = _make_transitions(rng, len(self.words), config.branching)  # (S, S), rows sum to 1
        # piece_lengths[a, b]: characters rendered when moving from state a to state b.
        word_lengths = np.array([len(w) for w in self.words] + [2], dtype=np.float64)  # EOS renders ".\n"
        self.piece_lengths = np.tile(word_lengths + 1, (self.eos + 1, 1))  # " word" after a word
        self.piece_lengths[self.eos, :] = word_lengths  # a capitalised word after EOS has no leading space
        self.piece_lengths[:, self.eos] = 2

    def stationary(self) -> np.ndarray:
        """pi with pi @ P = pi, sum(pi) = 1 (solved exactly, not iterated)."""
        size = self.transitions.shape[0]
        system = np.vstack([self.transitions.T - np.eye(size), np.ones(size)])
        rhs = np.zeros(size + 1)
        rhs[-1] = 1.0
        solution, *_ = np.linalg.lstsq(system, rhs, rcond=None)
        return solution

    def entropy_rate(self) -> EntropyRate:
        pi = self.stationary()
        p = self.transitions
        with np.errstate(divide="ignore", invalid="ignore"):
            row_entropy = -np.where(p > 0, p * np.log(p), 0.0).sum(axis=1)
        nats_per_step = float(pi @ row_entropy)
        chars_per_step = float(pi @ (p * self.piece_lengths).sum(axis=1))
        return EntropyRate(nats_per_step / chars_per_step)

    def sample_states(self, sentences: int, rng: np.random.Generator, chains: int = 4096) -> np.ndarray:
        """States of ``sentences`` whole sentences (each ends with EOS), starting after an EOS.

        Sentences are independent (every one starts from EOS), so ``chains`` run side by side, vectorised,
        each for a fixed number of sentences, and are concatenated: the result is one exact sample of the chain.
        """
        per_chain = -(-sentences // chains)
        cumulative = np.cumsum(self.transitions, axis=1)
        cumulative[:, -1] = 1.0  # guard against rounding below 1 in the last column
        state = np.full(chains, self.eos)
        done = np.zeros(chains, dtype=np.int64)
        columns: list[np.ndarray] = []
        while (done < per_chain).any():
            uniform = rng.random(chains)
            step = (cumulative[state] < uniform[:, None]).sum(axis=1)  # inverse-CDF sampling per chain
            step[done >= per_chain] = -1  # finished chains idle
            columns.append(step)
            active = step >= 0
            state = np.where(active, step, state)
            done += active & (step == self.eos)
        grid = np.stack(columns, axis=1)  # (chains, steps), -1 after a chain has finished
        states = grid[grid >= 0]  # row-major: chain 0's sentences, then chain 1's, ...
        ends = np.flatnonzero(states == self.eos)
        return states[: ends[sentences - 1] + 1]

    def render(self, states: np.ndarray) -> str:
        """Text of a state sequence that starts after an EOS."""
        pieces = np.array([" " + w for w in self.words] + [".\n"] + [w.capitalize() for w in self.words], dtype=object)
        previous = np.concatenate([[self.eos], states[:-1]])
        index = np.where((previous == self.eos) & (states != self.eos), states + self.eos + 1, states)
        return "".join(pieces[index].tolist())

    def log_probability(self, states: np.ndarray) -> float:
        """log p(states | start after EOS) under the true chain, in nats."""
        previous = np.concatenate([[self.eos], states[:-1]])
        return float(np.log(self.transitions[previous, states]).sum())

    def generate(self, characters: int) -> str:
        """Exactly ``characters`` characters of text (a prefix of one sample of the chain)."""
        rng = np.random.default_rng([self.config.seed, _GENERATOR_VERSION, 1])
        chars_per_sentence = self._expected_chars_per_sentence()
        text = ""
        while len(text) < characters:
            missing = characters - len(text)
            sentences = max(1, int(missing / chars_per_sentence * 1.02) + 16)
            text += self.render(self.sample_states(sentences, rng))
        return text[:characters]

    def _expected_chars_per_sentence(self) -> float:
        pi = self.stationary()
        chars_per_step = float(pi @ (self.transitions * self.piece_lengths).sum(axis=1))
        return chars_per_step / pi[self.eos]  # one EOS per sentence: steps per sentence = 1 / pi(EOS)


def _make_words(rng: np.random.Generator, count: int) -> list[str]:
    """``count`` distinct pronounceable lowercase words of one to three syllables."""
    words: list[str] = []
    seen: set[str] = set()
    while len(words) < count:
        syllables = rng.choice([1, 2, 3], p=[0.45, 0.4, 0.15])
        word = "".join(rng.choice(_ONSETS) + rng.choice(_VOWELS) + rng.choice(_CODAS) for _ in range(syllables))
        if word not in seen:
            seen.add(word)
            words.append(word)
    return words


def _make_transitions(rng: np.random.Generator, words: int, branching: int) -> np.ndarray:
    """A sparse row-stochastic (words + 1, words + 1) matrix; the last state is EOS."""
    size = words + 1
    transitions = np.zeros((size, size))
    # Zipf-like popularity makes some words frequent, as in English.
    popularity = 1.0 / np.arange(1, words + 1)
    popularity /= popularity.sum()
    for state in range(size):
        fan_out = min(words, branching if state < words else 4 * branching)  # sentences start more freely
        successors = rng.choice(words, size=fan_out, replace=False, p=popularity)
        weights = rng.dirichlet(np.ones(fan_out))
        if state < words and rng.random() < _ENDING_WORD_FRACTION:
            weights = np.append(weights * (1 - _EOS_SHARE), _EOS_SHARE)
            successors = np.append(successors, words)
        transitions[state, successors] = weights
    _ensure_sentences_end(transitions, words)
    return transitions


def _ensure_sentences_end(transitions: np.ndarray, words: int) -> None:
    """Let every word that cannot reach EOS end a sentence, so the chain has one recurrent class."""
    reaches_eos = np.zeros(words + 1, dtype=bool)
    reaches_eos[words] = True
    while True:
        grown = reaches_eos | (transitions[:, reaches_eos] > 0).any(axis=1)
        if (grown == reaches_eos).all():
            break
        reaches_eos = grown
    for state in np.flatnonzero(~reaches_eos):
        transitions[state, :] *= 1 - _EOS_SHARE
        transitions[state, words] = _EOS_SHARE
