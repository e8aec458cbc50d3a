"""Token shards: one uncompressed Arrow IPC (Feather v2) file per split, one column of token ids.

Each file holds a single record batch, so its column is one contiguous buffer that
``pyarrow.memory_map`` exposes as a read-only numpy view: no copy, and every process reading the same
file shares the page cache.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

TOKEN_COLUMN = "token"


def token_dtype(vocab_size: int) -> np.dtype:
    """uint16 while every id fits (half the bytes of uint32), else uint32."""
    return np.dtype(np.uint16) if vocab_size <= 1 << 16 else np.dtype(np.uint32)


def shard_name(split: str) -> str:
    return f"{split}.arrow"


def write_shard(path: Path, tokens: np.ndarray) -> None:
    """Write ``tokens`` (1-D) as one uncompressed record batch."""
    tokens = np.ascontiguousarray(tokens)
    # from_buffers wraps the numpy memory as it is (pa.array would also import pandas to inspect it).
    column = pa.Array.from_buffers(pa.from_numpy_dtype(tokens.dtype), len(tokens), [None, pa.py_buffer(tokens)])
    batch = pa.record_batch([column], names=[TOKEN_COLUMN])
    with pa.OSFile(str(path), "wb") as sink:
        with pa.ipc.new_file(sink, batch.schema, options=pa.ipc.IpcWriteOptions(compression=None)) as writer:
            writer.write_batch(batch)


def open_shard(path: Path) -> np.ndarray:
    """A read-only, zero-copy numpy view of the shard's token ids (memory-mapped)."""
    reader = pa.ipc.open_file(pa.memory_map(str(path), "r"))
    column = reader.get_batch(0).column(0)
    dtype = np.dtype(column.type.to_pandas_dtype())
    # A view on the mapped data buffer itself: no copy, so every process shares the page cache.
    return np.frombuffer(column.buffers()[1], dtype=dtype, count=len(column), offset=column.offset * dtype.itemsize)
