"""Approximate retrieval (models.ann.ItemIndex) against exact scoring, by catalog size and nprobe.

For each catalog size (default 10k, 100k and 1M items, D=64): the index's build seconds, its
recall@10 against the exact top 10 over 1,000 queries, and per-query latency at batch 1 and
batch 64 (medians) of the index search plus the exact re-score of its candidates, against
exact scoring (the full matrix product and top-k, as serving runs it without an index).

The vectors are synthetic unless --checkpoint names a trained one: items are a Gaussian mixture
(256 clusters) with power-law norms (popular items have long vectors, as in trained MF and
SASRec tables), and a query is the sum of 2 to 6 items drawn by popularity plus noise, like a
user vector folded in from a history. With --checkpoint the model's own item vectors are
indexed (sizes are ignored) and the queries are drawn from them the same way.

`measure(item_vectors, queries, nprobe)` is the same measurement for another benchmark's real
matrix and users (bench/scale.py).

Run: nice -n 10 .venv/bin/python bench/ann.py [--sizes 10000 100000 1000000]
     [--nprobe 8 16 32 64] [--checkpoint DIR] [--threads 1]
Writes bench/results/ann.json (--result names another file).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import median, write_result
from models.ann import ItemIndex, recall_at_k

DIM = 64
QUERIES = 1000
SINGLE_QUERIES = 200  # batch-1 latency is timed on the first 200 queries
BATCH = 64
TARGET_RECALL = 0.95


def synthetic_items(items: int, dim: int = DIM, seed: int = 0) -> np.ndarray:
    """Item vectors shaped like a trained model's: 256 Gaussian clusters, unit directions
    scaled by power-law norms (Pareto tail), row 0 the most popular (longest)."""
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((256, dim)).astype(np.float32)
    cluster = rng.integers(0, len(centers), items)
    vectors = centers[cluster] + 0.6 * rng.standard_normal((items, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    norms = np.sort(1.0 + rng.pareto(3.0, items))[::-1].astype(np.float32)
    return np.ascontiguousarray(vectors * norms[:, None])


def synthetic_queries(item_vectors: np.ndarray, count: int = QUERIES, seed: int = 1) -> np.ndarray:
    """User-like vectors: the sum of 2 to 6 items drawn by a Zipf popularity, plus noise."""
    rng = np.random.default_rng(seed)
    items = len(item_vectors)
    weights = 1.0 / np.arange(1, items + 1) ** 0.8
    weights /= weights.sum()
    scale = float(np.linalg.norm(item_vectors, axis=1).mean())
    queries = np.empty((count, item_vectors.shape[1]), dtype=np.float32)
    for n in range(count):
        picked = rng.choice(items, size=int(rng.integers(2, 7)), p=weights)
        noise = rng.standard_normal(item_vectors.shape[1]) * 0.3 * scale / 8
        queries[n] = item_vectors[picked].sum(axis=0) + noise
    return queries


def exact_top(items: torch.Tensor, queries: torch.Tensor, k: int) -> np.ndarray:
    """The exact top k per query (B, k), as serving ranks without an index."""
    return torch.topk(queries @ items.T, k, dim=1).indices.numpy()


def approx_top(index: ItemIndex, items: torch.Tensor, queries: np.ndarray, k: int) -> np.ndarray:
    """The index's k candidates per query, re-scored exactly (as app.serving.retrieval does)."""
    found = index.search(queries, k)
    rows = torch.from_numpy(np.maximum(found, 0))
    scores = torch.einsum("bd,bnd->bn", torch.from_numpy(queries), items[rows])
    scores[torch.from_numpy(found < 0)] = -torch.inf
    order = torch.argsort(scores, dim=1, descending=True).numpy()
    return np.take_along_axis(found, order, axis=1)


def per_query_ms(run: Callable[[np.ndarray], Any], queries: np.ndarray, batch: int) -> float:
    """Median milliseconds per query of `run` over the queries in batches of `batch`."""
    times = []
    limit = SINGLE_QUERIES if batch == 1 else len(queries)
    for start in range(0, limit - batch + 1, batch):
        chunk = queries[start : start + batch]
        began = time.perf_counter()
        run(chunk)
        times.append((time.perf_counter() - began) * 1000 / batch)
    return median(times)


def latencies(run: Callable[[np.ndarray], Any], queries: np.ndarray) -> dict[str, float]:
    """Per-query milliseconds at batch 1 and batch 64."""
    run(queries[:BATCH])  # warm-up: first calls page in the matrix
    return {
        "ms_batch1": per_query_ms(run, queries, 1),
        "ms_batch64": per_query_ms(run, queries, BATCH),
    }


def exact_latency(item_vectors: np.ndarray, queries: np.ndarray, k: int = 10) -> dict[str, float]:
    """Exact scoring's per-query milliseconds."""
    items = torch.from_numpy(np.ascontiguousarray(item_vectors, dtype=np.float32))
    return latencies(lambda q: exact_top(items, torch.from_numpy(q), k), queries)


def measure(
    item_vectors: np.ndarray,
    queries: np.ndarray,
    nprobe: int,
    k: int = 10,
    index: ItemIndex | None = None,
    exact: np.ndarray | None = None,
) -> dict[str, Any]:
    """Build seconds, recall@k against the exact top k, and per-query latency at batch 1 and
    64 of one index over `item_vectors` (I, D) for `queries` (B, D). `index` and `exact` reuse
    an index and the exact lists across nprobe values."""
    items = torch.from_numpy(np.ascontiguousarray(item_vectors, dtype=np.float32))
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    if index is None:
        index = ItemIndex.build(item_vectors, nprobe=nprobe)
    index.nprobe = nprobe
    if exact is None:
        exact = exact_top(items, torch.from_numpy(queries), k)
    approx = approx_top(index, items, queries, k)
    return {
        "items": int(items.shape[0]),
        "dim": int(items.shape[1]),
        "nlist": index.nlist,
        "nprobe": index.nprobe,
        "build_seconds": round(index.build_seconds, 2),
        f"recall@{k}": round(recall_at_k(exact, approx, k), 4),
        **latencies(lambda q: approx_top(index, items, q, k), queries),
    }


def run_size(
    item_vectors: np.ndarray, queries: np.ndarray, probes: list[int], k: int = 10
) -> dict[str, Any]:
    """Every nprobe on one index, with exact scoring's latency and each speed-up."""
    items = torch.from_numpy(np.ascontiguousarray(item_vectors, dtype=np.float32))
    exact = exact_top(items, torch.from_numpy(queries), k)
    index = ItemIndex.build(item_vectors, nprobe=probes[0])
    baseline = exact_latency(item_vectors, queries, k)
    rows = []
    for nprobe in probes:
        row = measure(item_vectors, queries, nprobe, k, index=index, exact=exact)
        row["speedup_batch1"] = round(baseline["ms_batch1"] / row["ms_batch1"], 1)
        row["speedup_batch64"] = round(baseline["ms_batch64"] / row["ms_batch64"], 1)
        rows.append(row)
        print_row(row, baseline)
    return {"items": len(item_vectors), "exact": baseline, "rows": rows}


def print_row(row: dict[str, Any], baseline: dict[str, float]) -> None:
    """One line of the table."""
    print(
        f"{row['items']:>9} {row['nlist']:>5} {row['nprobe']:>6} {row['build_seconds']:>8.1f} "
        f"{row['recall@10']:>9.4f} {row['ms_batch1']:>8.3f} {baseline['ms_batch1']:>8.3f} "
        f"{row['ms_batch64']:>8.3f} {baseline['ms_batch64']:>8.3f}",
        flush=True,
    )


def checkpoint_vectors(path: Path) -> np.ndarray:
    """A trained checkpoint's item vectors (I, D)."""
    from models.checkpoint import load_checkpoint

    model = load_checkpoint(path).model
    with torch.inference_mode():
        return model.item_vectors().detach().to(torch.float32).numpy()


def chosen_nprobe(sizes: list[dict[str, Any]]) -> int | None:
    """The smallest nprobe reaching TARGET_RECALL on the largest catalog measured."""
    rows = sizes[-1]["rows"]
    reaching = [r["nprobe"] for r in rows if r["recall@10"] >= TARGET_RECALL]
    return min(reaching) if reaching else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--nprobe", type=int, nargs="+", default=[8, 16, 32, 64])
    parser.add_argument("--checkpoint", type=Path, default=None)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--result", default="ann")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)  # faiss follows torch's setting (models.ann)
    print(
        f"{'items':>9} {'nlist':>5} {'nprobe':>6} {'build_s':>8} {'recall@10':>9} "
        f"{'ann_ms1':>8} {'exact1':>8} {'ann_ms64':>8} {'exact64':>8}"
    )
    catalogs: list[tuple[str, np.ndarray]]
    if args.checkpoint is not None:
        catalogs = [(f"checkpoint {args.checkpoint}", checkpoint_vectors(args.checkpoint))]
    else:
        catalogs = [("synthetic", synthetic_items(size)) for size in args.sizes]
    sizes = [run_size(vectors, synthetic_queries(vectors), args.nprobe) for _, vectors in catalogs]
    path = write_result(
        args.result,
        {
            "vectors": catalogs[0][0],
            "vector_model": __doc__.split("\n\n")[2].replace("\n", " "),
            "dim": int(catalogs[0][1].shape[1]),
            "queries": QUERIES,
            "threads": args.threads,
            "target_recall@10": TARGET_RECALL,
            "chosen_nprobe": chosen_nprobe(sizes),
            "sizes": sizes,
        },
    )
    print(f"chosen nprobe (recall@10 >= {TARGET_RECALL} on the largest): {chosen_nprobe(sizes)}")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
