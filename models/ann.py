"""Approximate maximum-inner-product retrieval over item vectors: a faiss IVF-Flat index.

An inverted-file index splits the items into `nlist` k-means cells and scans only the
`nprobe` cells nearest a query. IVF-Flat keeps the full vectors, so within the scanned cells
the ranking is exact: only items in unprobed cells can be missed. HNSW was measured too slow
to build on a 2-core machine (256 s for 200k x 64); IVF builds in seconds.

The cells are built in the Euclidean form of the inner-product problem (Bachrach et al. 2014,
"Speeding up the Xbox recommender system using a Euclidean transformation for inner-product
spaces"): an item x gets one more coordinate sqrt(M^2 - |x|^2) and a query q a 0, so
|q' - x'|^2 = |q|^2 + M^2 - 2 q.x and the nearest item is the one with the largest dot product.
With trained tables' power-law norms, cells formed and probed by inner product directly
(METRIC_INNER_PRODUCT) reached recall@10 0.69 at nprobe 64 on 100k items; this form 0.93
(bench/ann.py). Deterministic for a seed: the training sample and faiss's k-means take it.
"""

from __future__ import annotations

import math
import time
from typing import Any, cast

import faiss
import numpy as np
import torch

MAX_NLIST = 4096  # 4 * sqrt(1M) = 4000: cells of ~250 items at 1M
TRAIN_PER_LIST = 64  # training vectors per cell (faiss wants at least 39)
KMEANS_ITERATIONS = 10  # faiss's default for IVF training
# M = this x the largest norm at build. Items added later (new catalog items) longer than M
# cannot take the transform (their extra coordinate would be imaginary) and are kept out of the
# cells, in `unindexed`, for the caller to score exactly. Headroom costs recall: on a trained
# MF table (90k items, bench/scale.py M) recall@10 at nprobe 256 was 0.867 with 1.0 and 0.646
# with 2.0 (research/results/ann_headroom.md): a larger M shrinks the spread of the extra
# coordinate and blurs the cells.
NORM_HEADROOM = 1.0


def default_nlist(items: int) -> int:
    """About 4 * sqrt(items) cells, at most MAX_NLIST and never more than the items."""
    return max(1, min(MAX_NLIST, items, round(4 * math.sqrt(items))))


def _threads() -> None:
    """faiss's OpenMP threads follow torch's setting (OpenMP counts are per calling thread)."""
    faiss.omp_set_num_threads(max(1, torch.get_num_threads()))


def _float32(vectors: np.ndarray) -> np.ndarray:
    """A C-contiguous float32 (N, D) array, as faiss takes."""
    return np.ascontiguousarray(vectors, dtype=np.float32)


def _items_form(vectors: np.ndarray, max_norm: float) -> np.ndarray:
    """Items (N, D) -> (N, D + 1): x / M and the extra coordinate sqrt(1 - |x / M|^2), 0 past
    M. Scaled to unit length: a trained table's norms can all be tiny (a 1M-item MF table's
    largest was 0.23, its median 1e-6), and float32 distances of unscaled vectors lost the
    differences between scores (recall@10 stayed at 0.53 whatever nprobe was)."""
    scaled = _float32(vectors) / np.float32(max(max_norm, 1e-30))
    squared = np.einsum("nd,nd->n", scaled, scaled, dtype=np.float64)
    extra = np.sqrt(np.maximum(1.0 - squared, 0.0)).astype(np.float32)
    return np.ascontiguousarray(np.hstack([scaled, extra[:, None]]))


def _queries_form(queries: np.ndarray) -> np.ndarray:
    """Queries (B, D) -> (B, D + 1): unit length (the ranking by inner product does not change;
    a zero query stays zero), a 0 appended."""
    queries = _float32(queries)
    norms = np.linalg.norm(queries, axis=1, keepdims=True)
    unit = queries / np.maximum(norms, np.float32(1e-30))
    return np.ascontiguousarray(np.hstack([unit, np.zeros((len(queries), 1), np.float32)]))


class ItemIndex:
    """An IVF-Flat index for the largest inner products with item vectors (I, D); item n is
    row n."""

    def __init__(
        self, index: faiss.IndexIVFFlat, *, max_norm: float, seed: int, build_seconds: float
    ) -> None:
        self.index, self.max_norm = index, max_norm
        self.seed, self.build_seconds = seed, build_seconds
        self.rows = int(index.ntotal)  # rows covered: those in the cells and `unindexed`
        # Added rows longer than max_norm: never returned by `search`, the caller scores them.
        self.unindexed = np.empty(0, dtype=np.int64)

    @classmethod
    def build(
        cls,
        vectors: np.ndarray,
        *,
        nprobe: int = 32,
        nlist: int | None = None,
        seed: int = 0,
    ) -> ItemIndex:
        """Train the cells on a seeded sample of the rows, then add every row."""
        started = time.perf_counter()
        vectors = _float32(vectors)
        items, dim = vectors.shape
        if items == 0:
            raise ValueError("cannot index an empty item matrix")
        nlist = default_nlist(items) if nlist is None else max(1, min(nlist, items))
        max_norm = NORM_HEADROOM * float(np.linalg.norm(vectors, axis=1).max())
        euclidean = _items_form(vectors, max_norm)
        index = faiss.IndexIVFFlat(faiss.IndexFlatL2(dim + 1), dim + 1, nlist)
        index.cp.seed = seed
        index.cp.niter = KMEANS_ITERATIONS
        index.cp.min_points_per_centroid = 1  # small catalogs: train on what there is, quietly
        index.cp.max_points_per_centroid = TRAIN_PER_LIST  # the sample below is the whole set
        sample_size = min(items, TRAIN_PER_LIST * nlist)
        sample = np.random.default_rng(seed).choice(items, size=sample_size, replace=False)
        _threads()
        index.train(euclidean[np.sort(sample)])
        index.add(euclidean)
        built = cls(
            index, max_norm=max_norm, seed=seed, build_seconds=time.perf_counter() - started
        )
        built.nprobe = nprobe
        return built

    @property
    def ntotal(self) -> int:
        """Rows covered (0 .. ntotal - 1): searched in the cells, or listed in `unindexed`."""
        return self.rows

    @property
    def nlist(self) -> int:
        """Number of k-means cells."""
        return int(self.index.nlist)

    @property
    def nprobe(self) -> int:
        """Cells scanned per query."""
        return int(self.index.nprobe)

    @nprobe.setter
    def nprobe(self, value: int) -> None:
        """Scan `value` cells per query from now on (benchmarks sweep it on one index)."""
        self.index.nprobe = max(1, min(value, self.nlist))

    def search(self, queries: np.ndarray, n: int) -> np.ndarray:
        """The n best items per query (B, D) by inner product: (B, n) int64, best first, -1 where
        the probed cells hold fewer than n items."""
        if n <= 0:
            return np.empty((len(queries), 0), dtype=np.int64)
        _threads()
        _, indices = self.index.search(_queries_form(queries), n)
        return np.asarray(indices, dtype=np.int64)

    def add(self, vectors: np.ndarray) -> None:
        """Append rows ntotal .. ntotal + N - 1 (in place: never on an index a reader shares);
        rows longer than max_norm go to `unindexed`."""
        vectors = _float32(vectors)
        ids = np.arange(self.rows, self.rows + len(vectors), dtype=np.int64)
        long = np.linalg.norm(vectors, axis=1) > self.max_norm
        _threads()
        self.index.add_with_ids(_items_form(vectors[~long], self.max_norm), ids[~long])
        self.unindexed = np.concatenate([self.unindexed, ids[long]])
        self.rows += len(vectors)

    def with_added(self, vectors: np.ndarray) -> ItemIndex:
        """A copy with the rows appended; this index is left as it is."""
        copy = ItemIndex(
            cast(faiss.IndexIVFFlat, faiss.clone_index(self.index)),
            max_norm=self.max_norm,
            seed=self.seed,
            build_seconds=self.build_seconds,
        )
        copy.rows, copy.unindexed = self.rows, self.unindexed
        copy.add(vectors)
        return copy

    def describe(self) -> dict[str, Any]:
        """What /models shows about the index."""
        return {
            "type": "faiss.IndexIVFFlat (inner product as L2, one extra coordinate)",
            "items": self.ntotal,
            "unindexed": len(self.unindexed),
            "nlist": self.nlist,
            "nprobe": self.nprobe,
            "seed": self.seed,
            "build_seconds": round(self.build_seconds, 3),
        }


def recall_at_k(exact_indices: np.ndarray, approx_indices: np.ndarray, k: int) -> float:
    """Mean share of each row's exact top k found in its approximate top k (-1 never counts)."""
    exact, approx = np.asarray(exact_indices)[:, :k], np.asarray(approx_indices)[:, :k]
    if not len(exact) or k <= 0:
        return 1.0
    found = [
        len(set(e[e >= 0].tolist()) & set(a[a >= 0].tolist())) / max(1, int((e >= 0).sum()))
        for e, a in zip(exact, approx, strict=True)
    ]
    return float(np.mean(found))
