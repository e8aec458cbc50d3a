"""The reader: zero-copy memory maps, resumable training batches, fixed evaluation blocks."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from data_pipeline.config import DataConfig, SyntheticConfig
from data_pipeline.prepare import prepare_dataset
from data_pipeline.reader import TokenDataset
from data_pipeline.shards import open_shard, token_dtype, write_shard
from textune.errors import TextuneError

BLOCK = 32


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> TokenDataset:
    out = tmp_path_factory.mktemp("datasets")
    return TokenDataset.open(prepare_dataset(DataConfig(synthetic=SyntheticConfig(characters=100_000)), out))


def _mapped_files(address: int) -> list[str]:
    """Files whose memory mapping in this process contains ``address``."""
    found = []
    for line in Path("/proc/self/maps").read_text().splitlines():
        fields = line.split(maxsplit=5)
        low, high = (int(x, 16) for x in fields[0].split("-"))
        if low <= address < high and len(fields) == 6:
            found.append(fields[5])
    return found


def test_shards_are_zero_copy_views_of_the_memory_mapped_file(dataset: TokenDataset) -> None:
    allocated = pa.total_allocated_bytes()
    tokens = open_shard(dataset.path / "train.arrow")
    assert pa.total_allocated_bytes() == allocated  # Arrow allocated nothing: no copy was made
    assert tokens.dtype == np.uint16 and not tokens.flags.writeable
    assert _mapped_files(tokens.ctypes.data) == [str(dataset.path / "train.arrow")]


@pytest.mark.parametrize("vocab_size", [256, 65_536, 70_000])
def test_token_width_follows_the_vocabulary(vocab_size: int, tmp_path: Path) -> None:
    ids = np.array([0, 1, vocab_size - 1], dtype=token_dtype(vocab_size))
    write_shard(tmp_path / "s.arrow", ids)
    read = open_shard(tmp_path / "s.arrow")
    assert read.dtype == (np.uint16 if vocab_size <= 65_536 else np.uint32)
    assert read.tolist() == [0, 1, vocab_size - 1]


def test_training_batches_are_shifted_blocks_and_resume_exactly(dataset: TokenDataset) -> None:
    rng = np.random.default_rng(0)
    x, y = dataset.sample_batch("train", 8, BLOCK, rng)
    assert x.shape == y.shape == (8, BLOCK) and x.dtype == y.dtype == np.int64
    assert np.array_equal(x[:, 1:], y[:, :-1])
    train = dataset.tokens["train"]
    for row in x:  # every row is a real block of the split
        start = int(np.flatnonzero(np.all(np.lib.stride_tricks.sliding_window_view(train, BLOCK) == row, axis=1))[0])
        assert np.array_equal(train[start : start + BLOCK], row)
    saved = rng.bit_generator.state  # what a checkpoint stores
    expected = [dataset.sample_batch("train", 8, BLOCK, rng)[0] for _ in range(3)]
    resumed = np.random.default_rng()
    resumed.bit_generator.state = saved
    assert all(np.array_equal(e, dataset.sample_batch("train", 8, BLOCK, resumed)[0]) for e in expected)


def test_eval_batches_cover_the_split_in_order(dataset: TokenDataset) -> None:
    val = dataset.tokens["val"]
    batches = list(dataset.eval_batches("val", BLOCK, batch_size=7))
    x = np.concatenate([b[0] for b in batches])
    y = np.concatenate([b[1] for b in batches])
    blocks = (len(val) - 1) // BLOCK
    assert x.shape == (blocks, BLOCK) and len(val) - blocks * BLOCK <= BLOCK  # only a sub-block tail is left
    assert np.array_equal(x.ravel(), val[: blocks * BLOCK])
    assert np.array_equal(y.ravel(), val[1 : blocks * BLOCK + 1])
    again = np.concatenate([b[0] for b in dataset.eval_batches("val", BLOCK, batch_size=64)])
    assert np.array_equal(again, x)  # the same for every caller, whatever the batch size


def test_eval_subset_is_evenly_spaced_and_fixed(dataset: TokenDataset) -> None:
    full = np.concatenate([b[0] for b in dataset.eval_batches("val", BLOCK, batch_size=16)])
    subset = np.concatenate([b[0] for b in dataset.eval_batches("val", BLOCK, batch_size=4, max_blocks=10)])
    assert subset.shape == (10, BLOCK)
    rows = [int(np.flatnonzero((full == row).all(axis=1))[0]) for row in subset]
    assert rows[0] == 0 and rows[-1] == len(full) - 1
    assert max(np.diff(rows)) - min(np.diff(rows)) <= 1


def test_a_split_shorter_than_one_block_is_a_clear_error(dataset: TokenDataset) -> None:
    too_long = dataset.num_tokens("val")
    with pytest.raises(TextuneError) as info:
        dataset.check_block_size(too_long)
    text = info.value.paragraph()
    assert '"val" split' in text and f"block_size={too_long}" in text and f"at most {too_long - 1}" in text
    with pytest.raises(TextuneError):
        next(dataset.eval_batches("val", too_long, batch_size=1))
    dataset.check_block_size(too_long - 1)  # exactly one block fits


def test_pickling_reopens_the_memory_map_instead_of_copying(dataset: TokenDataset) -> None:
    payload = pickle.dumps(dataset)
    assert len(payload) < 1_000  # the path, not the tokens
    clone = pickle.loads(payload)
    assert np.array_equal(clone.tokens["val"], dataset.tokens["val"]) and not clone.tokens["val"].flags.writeable


def test_unknown_split_is_named(dataset: TokenDataset) -> None:
    with pytest.raises(TextuneError, match='no split "validation"'):
        dataset.num_tokens("validation")
