"""models.ann: the IVF index's recall, added rows, determinism, -1 padding, recall_at_k."""

from __future__ import annotations

import numpy as np
import pytest

from models.ann import ItemIndex, default_nlist, recall_at_k


def clustered(items: int = 2000, dim: int = 16, seed: int = 0) -> np.ndarray:
    """Items in 20 Gaussian clusters with varied norms (float32)."""
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((20, dim)) * 3
    vectors = centers[rng.integers(0, 20, items)] + rng.standard_normal((items, dim))
    return (vectors * rng.uniform(0.5, 2.0, (items, 1))).astype(np.float32)


def exact_top(items: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """The exact top k by inner product."""
    return np.argsort(-(queries @ items.T), axis=1, kind="stable")[:, :k]


def test_recall_is_high_with_enough_probes_and_exact_with_all() -> None:
    items = clustered()
    queries = items[:100] + np.random.default_rng(1).standard_normal((100, 16)).astype(np.float32)
    exact = exact_top(items, queries, 10)
    index = ItemIndex.build(items, nprobe=8, seed=0)
    assert index.nlist == default_nlist(2000) == 179
    few = recall_at_k(exact, index.search(queries, 10), 10)
    index.nprobe = index.nlist  # every cell: the search is exhaustive
    assert recall_at_k(exact, index.search(queries, 10), 10) == 1.0
    index.nprobe = 64
    assert recall_at_k(exact, index.search(queries, 10), 10) >= 0.95
    assert few < 1.0  # few probes do miss items: the measure can tell


def test_added_rows_are_found_and_the_original_is_untouched() -> None:
    items = clustered(500)
    index = ItemIndex.build(items, nprobe=1000, seed=0)
    direction = np.zeros((1, 16), dtype=np.float32)
    direction[0, 3] = 1.0
    # Within the build's longest norm (longer ones stay out of the cells, `unindexed`), and
    # further along axis 3 than any item: the best item for that query.
    longest = float(np.linalg.norm(items, axis=1).max())
    assert float(items[:, 3].max()) < 0.99 * longest
    new = direction * 0.99 * longest
    copy = index.with_added(new)
    assert (copy.ntotal, index.ntotal) == (501, 500)
    assert copy.search(direction, 1)[0, 0] == 500
    assert 500 not in index.search(direction, 500)[0]
    index.add(new)
    assert index.ntotal == 501 and index.search(direction, 1)[0, 0] == 500


def test_same_seed_same_index() -> None:
    items = clustered(1500)
    queries = clustered(50, seed=3)
    first = ItemIndex.build(items, nprobe=4, seed=7).search(queries, 20)
    second = ItemIndex.build(items, nprobe=4, seed=7).search(queries, 20)
    assert np.array_equal(first, second)


def test_short_cells_pad_with_minus_one() -> None:
    items = clustered(1000)
    index = ItemIndex.build(items, nlist=50, nprobe=1, seed=0)
    found = index.search(items[:5], 500)  # one cell of ~20 items cannot hold 500
    assert found.shape == (5, 500) and found.dtype == np.int64
    for row in found:
        valid = row[row >= 0]
        assert 0 < len(valid) < 500 and (row[len(valid) :] == -1).all()
        assert len(set(valid.tolist())) == len(valid)


def test_describe_and_bad_input() -> None:
    index = ItemIndex.build(clustered(300), nprobe=4, seed=0)
    described = index.describe()
    assert (described["items"], described["nprobe"], described["nlist"]) == (300, 4, 69)
    assert described["build_seconds"] >= 0
    assert index.search(clustered(2), 0).shape == (2, 0)
    with pytest.raises(ValueError, match="empty"):
        ItemIndex.build(np.zeros((0, 4), dtype=np.float32))


def test_recall_at_k_counts_shared_items() -> None:
    exact = np.array([[1, 2, 3], [4, 5, 6]])
    approx = np.array([[3, 2, 9], [-1, -1, -1]])
    assert recall_at_k(exact, approx, 3) == pytest.approx((2 / 3 + 0) / 2)
    assert recall_at_k(exact, exact, 2) == 1.0
