"""What the pretrained text encoder costs: time, memory and disk per 10k catalog items.

Usage: nice python -m research.encoder_cost [--items 10000] [--threads 1] [--catalog ml-1m]
The texts are the catalog's item texts (models.catalog.item_text), repeated with a numbered
suffix up to `--items` so that each is distinct and of realistic length. Nothing is cached:
every text is encoded. Writes research/results/encoder_cost.json and prints it.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from models.content import TextEncoder, load_item_texts
from research.common import RESULTS


def distinct_texts(texts: Sequence[str], count: int) -> list[str]:
    """`count` texts: the given ones in order, then again with " (k)" appended, and so on."""
    return [
        texts[i % len(texts)] + ("" if i < len(texts) else f" ({i // len(texts)})")
        for i in range(count)
    ]


def peak_rss_mb() -> float:
    """The process's peak resident memory so far, in MB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def directory_mb(path: Path) -> float:
    """Total size of the files under a directory, in MB."""
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1e6


def measure(texts: list[str], threads: int, batch_size: int = 64) -> dict[str, Any]:
    """Load the packaged encoder and encode `texts` once on `threads` torch threads."""
    torch.set_num_threads(threads)
    before = peak_rss_mb()
    encoder = TextEncoder(batch_size=batch_size, threads=threads)
    start = time.perf_counter()
    dim = encoder.dim  # loads the model
    load_seconds, loaded = time.perf_counter() - start, peak_rss_mb()
    wall, cpu = time.perf_counter(), time.process_time()
    vectors = encoder.encode(texts)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    per_10k = 10_000 / len(texts)
    return {
        "encoder": encoder.name,
        "items": len(texts),
        "threads": threads,
        "batch_size": batch_size,
        "mean_text_chars": round(sum(map(len, texts)) / len(texts), 1),
        "load_seconds": round(load_seconds, 2),
        "encode_seconds_per_10k": round(wall * per_10k, 1),
        "encode_cpu_seconds_per_10k": round(cpu * per_10k, 1),
        "items_per_second": round(len(texts) / wall, 1),
        "rss_mb_before_load": round(before, 1),  # python, torch, sentence-transformers
        "rss_mb_model_loaded": round(loaded - before, 1),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "package_disk_mb": round(directory_mb(encoder.directory), 1),
        "vectors_mb_per_10k": round(vectors[:1].nbytes * 10_000 / 1e6, 2),
        "dim": dim,
        "load_avg": round(os.getloadavg()[0], 2),
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }


def main(argv: Sequence[str] | None = None) -> None:
    """Measure and write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--catalog", default="ml-1m")
    parser.add_argument("--out", type=Path, default=RESULTS / "encoder_cost.json")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    texts = distinct_texts(list(load_item_texts(args.catalog).values()), args.items)
    row = {"catalog": args.catalog, **measure(texts, args.threads)}
    args.out.write_text(json.dumps(row, indent=1) + "\n")
    print(json.dumps(row, indent=1))


if __name__ == "__main__":
    main()
