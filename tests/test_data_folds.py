"""Validation folds: chunks of the train+val text that cover it, never overlap their training part, never change."""

from __future__ import annotations

import itertools
import pickle
from pathlib import Path

import numpy as np
import pytest

from data_pipeline.config import DataConfig, SyntheticConfig, TokenizerConfig
from data_pipeline.folds import Fold
from data_pipeline.prepare import prepare_dataset
from data_pipeline.reader import TokenDataset
from models.trial import run_trial
from support.models import RecordingReporter, tiny_config
from textune.errors import TextuneError

BLOCK = 32
FOLD_COUNTS = (2, 3, 5)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> TokenDataset:
    out = tmp_path_factory.mktemp("datasets")
    return TokenDataset.open(prepare_dataset(DataConfig(synthetic=SyntheticConfig(characters=60_000)), out))


@pytest.fixture(scope="module")
def numbered(dataset: TokenDataset) -> TokenDataset:
    """The dataset's layout with token i of the train+val stream replaced by the id i: a block shows where it
    was read from, and whether it is contiguous."""
    train, val = (dataset.num_tokens(name) for name in ("train", "val"))
    stream = np.arange(train + val, dtype=np.uint32)
    tokens = {"train": stream[:train], "val": stream[train:], "test": dataset.tokens["test"]}
    return TokenDataset(dataset.path, dataset.manifest, dataset.tokenizer, tokens)


def intervals(segments: list[np.ndarray]) -> list[tuple[int, int]]:
    """[first, last + 1) stream positions of each segment of the numbered dataset."""
    return [(int(s[0]), int(s[-1]) + 1) for s in segments]


def folded(base: TokenDataset, fold: Fold) -> TokenDataset:
    return TokenDataset(base.path, base.manifest, base.tokenizer, base.tokens, fold)


@pytest.mark.parametrize("count", FOLD_COUNTS)
def test_val_chunks_tile_the_train_val_text_and_training_is_the_rest(numbered: TokenDataset, count: int) -> None:
    total = numbered.num_tokens("train") + numbered.num_tokens("val")
    covered = []
    for index in range(count):
        fold = folded(numbered, Fold(index, count))
        val, train = intervals(fold.segments["val"]), intervals(fold.segments["train"])
        covered += val
        positions = sorted(val + train)
        assert positions[0][0] == 0 and positions[-1][1] == total  # together: the whole stream...
        assert all(a[1] == b[0] for a, b in itertools.pairwise(positions))  # ...with no gap and no overlap
        assert fold.num_tokens("val") in (total // count, total // count + 1)  # chunks of equal size
        assert fold.segments["test"][0] is numbered.tokens["test"]  # the test split is in no fold
    merged = sorted(covered)
    assert merged[0][0] == 0 and merged[-1][1] == total and all(a[1] == b[0] for a, b in itertools.pairwise(merged))


@pytest.mark.parametrize("count", FOLD_COUNTS)
def test_no_block_crosses_into_the_validation_chunk(numbered: TokenDataset, count: int) -> None:
    rng = np.random.default_rng(0)
    for index in range(count):
        fold = folded(numbered, Fold(index, count))
        val_start, val_end = intervals(fold.segments["val"])[0][0], intervals(fold.segments["val"])[-1][1]
        x, y = fold.sample_batch("train", 512, BLOCK, rng)
        blocks = np.concatenate([x, y[:, -1:]], axis=1)  # (B, T + 1) stream positions
        assert (np.diff(blocks, axis=1) == 1).all()  # contiguous: no block jumps over the chunk
        assert ((blocks[:, -1] < val_start) | (blocks[:, 0] >= val_end)).all()  # and none touches it
        seen_segments = {
            int(np.searchsorted([s for s, _ in intervals(fold.segments["train"])], b, "right")) for b in blocks[:, 0]
        }
        # draws come from every training segment that holds a block
        assert len(seen_segments) == sum(len(s) > BLOCK for s in fold.segments["train"])
        for x_val, y_val in fold.eval_batches("val", BLOCK, batch_size=16):
            assert ((x_val >= val_start) & (y_val < val_end)).all()


def test_folds_are_deterministic_and_survive_pickling(dataset: TokenDataset) -> None:
    fold = TokenDataset.open(dataset.path, Fold(1, 3))
    again = pickle.loads(pickle.dumps(fold))
    assert again.fold == Fold(1, 3)
    first = np.concatenate([x for x, _ in fold.eval_batches("val", BLOCK, 16, max_blocks=20)])
    second = np.concatenate([x for x, _ in again.eval_batches("val", BLOCK, 7, max_blocks=20)])
    assert first.shape == (20, BLOCK) and np.array_equal(first, second)
    state = np.random.default_rng(4).bit_generator.state
    batches = []
    for reader in (fold, again):
        rng = np.random.default_rng()
        rng.bit_generator.state = state
        batches.append(reader.sample_batch("train", 8, BLOCK, rng)[0])
    assert np.array_equal(*batches)


def test_no_fold_reads_exactly_as_before(dataset: TokenDataset) -> None:
    rng = np.random.default_rng(3)
    x, _ = dataset.sample_batch("train", 8, BLOCK, rng)
    starts = np.random.default_rng(3).integers(0, len(dataset.tokens["train"]) - BLOCK, size=8)
    assert np.array_equal(x, dataset.tokens["train"][starts[:, None] + np.arange(BLOCK)])


def test_a_folds_characters_per_token_come_from_its_own_text(tmp_path: Path) -> None:
    config = DataConfig(
        synthetic=SyntheticConfig(characters=30_000), tokenizer=TokenizerConfig(kind="bpe", vocab_size=300)
    )
    path = prepare_dataset(config, tmp_path)
    fold = TokenDataset.open(path, Fold(0, 2))
    val_chars = len(fold.tokenizer.decode(fold.segments["val"][0]))
    assert fold.chars_per_token("val") == pytest.approx(val_chars / fold.num_tokens("val"))
    splits = fold.manifest.splits
    total_chars = splits["train"].characters + splits["val"].characters
    assert fold.chars_per_token("train") * fold.num_tokens("train") == pytest.approx(total_chars - val_chars)
    assert fold.chars_per_token("test") == splits["test"].chars_per_token


def test_a_fold_too_short_for_one_block_names_folds_and_a_count_that_fits(dataset: TokenDataset) -> None:
    stream = dataset.num_tokens("train") + dataset.num_tokens("val")
    count = stream // BLOCK  # chunks of about BLOCK tokens: one short of a block (BLOCK + 1)
    with pytest.raises(TextuneError) as info:
        TokenDataset.open(dataset.path, Fold(0, count)).check_block_size(BLOCK)
    text = info.value.paragraph()
    assert f"--folds {count}" in text and f"block_size={BLOCK}" in text and "at most" in text
    fitting = int(text.split("Use at most ")[1].split()[0])
    assert 2 <= fitting < count
    for index in range(fitting):
        folded(dataset, Fold(index, fitting)).check_block_size(BLOCK)


def test_training_on_two_folds_validates_on_different_text(tmp_path: Path, dataset: TokenDataset) -> None:
    losses = []
    for fold in (0, 1):
        reporter = RecordingReporter()
        run_trial(
            tiny_config(
                str(dataset.path),
                "transformer",
                block_size=BLOCK,
                max_tokens=2048,
                eval_every_tokens=2048,
                fold=fold,
                num_folds=2,
            ),
            reporter,
        )
        losses.append(reporter.reports[-1]["val_loss"])
    assert losses[0] != losses[1]  # same seed and model, another validation chunk
    with pytest.raises(TextuneError, match="--folds"):
        run_trial(
            tiny_config(str(dataset.path), "transformer", block_size=BLOCK, fold=0, num_folds=5000), RecordingReporter()
        )


@pytest.mark.parametrize(
    "fold_keys, fragment",
    [
        ({"fold": 0}, "fold and num_folds go together"),
        ({"num_folds": 3}, "fold and num_folds go together"),
        ({"fold": 3, "num_folds": 3}, "fold must be below num_folds"),
        ({"fold": 0, "num_folds": 1}, '"num_folds" = 1'),
    ],
)
def test_trial_configs_check_their_fold(dataset: TokenDataset, fold_keys: dict[str, int], fragment: str) -> None:
    with pytest.raises(TextuneError, match=fragment):
        run_trial(tiny_config(str(dataset.path), "transformer", **fold_keys), RecordingReporter())
