"""Prepare throughput (MB/s of corpus text) for the char and BPE tokenizers on a synthetic corpus.

The corpus is generated once and written as a text file (generation is not timed); each tokenizer then
prepares it from scratch into a fresh directory. The byte tokenizer, which trains nothing, is the baseline
of the same run: the cost of reading, hashing, splitting and writing shards alone.

    .venv/bin/python -m benchmarks.bench_prepare [--megabytes 100]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from benchmarks.machine import RESULTS, load_note, machine_description
from data_pipeline.config import DataConfig, SyntheticConfig, TokenizerConfig
from data_pipeline.manifest import Manifest
from data_pipeline.prepare import prepare_dataset
from data_pipeline.synthetic import MarkovSource

TOKENIZERS = [TokenizerConfig(kind="byte"), TokenizerConfig(kind="char"), TokenizerConfig(kind="bpe", vocab_size=4096)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megabytes", type=float, default=100.0, help="corpus size (10^6 characters)")
    args = parser.parse_args()
    characters = int(args.megabytes * 1e6)
    machine = f"{machine_description()}, {load_note()}"
    with tempfile.TemporaryDirectory(prefix="bench-prepare-") as scratch:
        corpus = Path(scratch) / "corpus.txt"
        corpus.write_text(MarkovSource(SyntheticConfig(characters=characters)).generate(characters), encoding="utf-8")
        megabytes = corpus.stat().st_size / 1e6
        seconds, cpu_seconds, vocab_sizes = {}, {}, {}
        for tokenizer in TOKENIZERS:
            out = Path(scratch) / tokenizer.kind
            start, cpu_start = time.perf_counter(), time.process_time()
            dataset_dir = prepare_dataset(DataConfig(source=str(corpus), tokenizer=tokenizer), out)
            seconds[tokenizer.kind] = time.perf_counter() - start
            # CPU time of all threads: on a shared machine it moves less with other people's load than wall time.
            cpu_seconds[tokenizer.kind] = time.process_time() - cpu_start
            vocab_sizes[tokenizer.kind] = Manifest.read(dataset_dir).tokenizer.vocab_size
    throughput = {kind: megabytes / s for kind, s in seconds.items()}
    result = {
        "benchmark": "prepare_throughput",
        "corpus_mb": megabytes,
        "seconds": seconds,
        "cpu_seconds": cpu_seconds,
        "mb_per_s": throughput,
        "vs_byte": {k: v / throughput["byte"] for k, v in throughput.items()},
        "vocab_sizes": vocab_sizes,
        "machine": machine,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "bench_prepare.json").write_text(json.dumps(result, indent=2) + "\n")
    for kind in ("char", "bpe"):
        print(
            f"| prepare throughput, {kind} tokenizer (vocab {vocab_sizes[kind]}), "
            f"{megabytes:.0f} MB synthetic corpus | "
            f"{throughput[kind]:.1f} MB/s ({seconds[kind]:.1f} s wall, {cpu_seconds[kind]:.1f} s CPU; "
            f"{result['vs_byte'][kind]:.2f}x byte) | "
            f"byte tokenizer {throughput['byte']:.1f} MB/s | `.venv/bin/python -m benchmarks.bench_prepare` | "
            f"{result['machine']} |"
        )


if __name__ == "__main__":
    main()
