"""Memory of 4 reader processes vs 1 over the same prepared dataset (about 100 MB of shards).

Each reader opens the dataset, records its proportional set size (Pss), touches every token of every
split (and draws training batches), then reports again. The growth of Pss is the memory the reader spent
on the data; shared pages count 1/N to each of N sharers, so summing growth over readers gives the
machine-wide cost. ``copy`` readers, which load the tokens into private arrays, are the baseline of the
same run. Goal: each extra memory-mapped reader adds under 5% of the dataset's size.

    .venv/bin/python -m benchmarks.bench_reader_rss [--megabytes 100]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.machine import RESULTS, load_note, machine_description
from data_pipeline.config import DataConfig, SyntheticConfig
from data_pipeline.prepare import prepare_dataset

READER = """
import sys, numpy as np
from data_pipeline.reader import TokenDataset

def pss_kb():
    for line in open("/proc/self/smaps_rollup"):
        if line.startswith("Pss:"):
            return int(line.split()[1])

dataset = TokenDataset.open(sys.argv[1])
before = pss_kb()
splits = {name: (np.array(t) if sys.argv[2] == "copy" else t) for name, t in dataset.tokens.items()}
total = sum(int(t.sum(dtype=np.int64)) for t in splits.values())  # touch every page
rng = np.random.default_rng(0)
for _ in range(200):
    dataset.sample_batch("train", 64, 256, rng)
print(before, flush=True)
sys.stdin.read()  # stay alive until every reader has been measured
"""


def measure(dataset_dir: Path, readers: int, mode: str) -> list[int]:
    """Pss growth (bytes) of each of ``readers`` concurrent reader processes."""
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", READER, str(dataset_dir), mode],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(readers)
    ]
    try:
        before = [int(p.stdout.readline()) for p in procs]  # every reader has touched all of its data
        after = [_pss_kb(p.pid) for p in procs]
    finally:
        for p in procs:
            p.communicate(timeout=60)
    return [(a - b) * 1024 for a, b in zip(after, before, strict=True)]


def _pss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1])
    raise RuntimeError(f"no Pss for {pid}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megabytes", type=float, default=100.0, help="dataset size on disk (10^6 bytes)")
    args = parser.parse_args()
    characters = int(args.megabytes * 1e6 / 2)  # char tokens are uint16: two bytes per character
    machine = f"{machine_description()}, {load_note()}"
    with tempfile.TemporaryDirectory(prefix="bench-rss-") as scratch:
        config = DataConfig(synthetic=SyntheticConfig(characters=characters))
        dataset_dir = prepare_dataset(config, Path(scratch))
        size = sum(p.stat().st_size for p in dataset_dir.glob("*.arrow"))
        growth = {f"{mode}_{n}": measure(dataset_dir, n, mode) for mode in ("mmap", "copy") for n in (1, 4)}
    extra = {mode: (sum(growth[f"{mode}_4"]) - sum(growth[f"{mode}_1"])) / 3 / size for mode in ("mmap", "copy")}
    result = {
        "benchmark": "reader_rss",
        "dataset_bytes": size,
        "pss_growth_bytes": growth,
        "extra_reader_fraction_of_dataset": extra,
        "machine": machine,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "bench_reader_rss.json").write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"| memory per extra reader (4 readers vs 1, {size / 1e6:.0f} MB dataset, Pss growth) | "
        f"{extra['mmap']:.1%} of the dataset ({sum(growth['mmap_4']) / 1e6:.0f} MB for 4 readers, "
        f"{sum(growth['mmap_1']) / 1e6:.0f} MB for 1) | private-copy readers: {extra['copy']:.0%} per extra reader | "
        f"`.venv/bin/python -m benchmarks.bench_reader_rss` | {result['machine']} |"
    )


if __name__ == "__main__":
    main()
