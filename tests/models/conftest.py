"""Tiny generated datasets shared by the model tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from models.data import IdMap, LeaveOneOut, default_data_dir

BLOCKS, ITEMS_PER_BLOCK, USERS_PER_BLOCK = 4, 5, 10
NUM_ITEMS = BLOCKS * ITEMS_PER_BLOCK


def checkerboard() -> tuple[list[np.ndarray], np.ndarray]:
    """Users like exactly the items of their block; each user's history misses one of them.

    Returns (histories, withheld): a good collaborative model ranks `withheld[u]` first among the
    items not in user u's history, since the rest belong to other blocks.
    """
    rng = np.random.default_rng(0)
    histories, withheld = [], []
    for user in range(BLOCKS * USERS_PER_BLOCK):
        block = user % BLOCKS
        items = block * ITEMS_PER_BLOCK + np.arange(ITEMS_PER_BLOCK)
        held = items[(user // BLOCKS) % ITEMS_PER_BLOCK]
        histories.append(rng.permutation(items[items != held]).astype(np.int64))
        withheld.append(held)
    return histories, np.array(withheld, dtype=np.int64)


def checkerboard_features(dim: int = 8, seed: int = 0) -> np.ndarray:
    """Text vectors for the checkerboard's items (I, dim), unit length: each item's block
    direction plus a little item noise, so items of one block read alike."""
    rng = np.random.default_rng(seed)
    blocks = np.arange(NUM_ITEMS) // ITEMS_PER_BLOCK
    features = np.eye(dim, dtype=np.float32)[blocks] + 0.1 * rng.normal(size=(NUM_ITEMS, dim))
    return (features / np.linalg.norm(features, axis=1, keepdims=True)).astype(np.float32)


def random_loo(users: int = 60, items: int = 40, seed: int = 0) -> LeaveOneOut:
    """A small leave-one-out dataset with clustered random histories."""
    rng = np.random.default_rng(seed)
    train, val, test = [], [], []
    for user in range(users):
        cluster = user % 4
        pool = (cluster * 10 + np.arange(14)) % items  # overlapping item clusters
        picks = rng.choice(pool, size=rng.integers(5, 12), replace=False)
        train.append(picks[:-2].astype(np.int64))
        val.append(picks[-2])
        test.append(picks[-1])
    # Times from their own generator, so the histories stay those of earlier versions.
    clock = np.random.default_rng(seed + 1)
    times = [np.cumsum(clock.choice([0, 30, 7200], size=len(h) + 2)) for h in train]
    return LeaveOneOut(
        user_ids=IdMap(f"u{u}" for u in range(users)),
        item_ids=IdMap(f"i{i}" for i in range(items)),
        train=train,
        val=np.array(val, dtype=np.int64),
        test=np.array(test, dtype=np.int64),
        meta={"source": "random_loo"},
        train_times=[t[:-2] for t in times],
        val_times=np.array([t[-2] for t in times], dtype=np.int64),
        test_times=np.array([t[-1] for t in times], dtype=np.int64),
    )


def write_ratings_csv(path: Path, users: int = 30, items: int = 25, seed: int = 0) -> Path:
    """A MovieLens-style ratings.csv where every user and item passes a 5-core filter."""
    rng = np.random.default_rng(seed)
    lines = ["userId,movieId,rating,timestamp"]
    for user in range(1, users + 1):
        picked = rng.choice(np.arange(1, items + 1), size=12, replace=False)
        for t, item in enumerate(picked):
            lines.append(f"{user},{item},4.0,{1000 + 10 * t}")
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def loo() -> LeaveOneOut:
    """A fresh small leave-one-out dataset."""
    return random_loo()


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The shared datasets directory; tests needing it skip when it is absent."""
    root = default_data_dir()
    if not root.is_dir():
        pytest.skip(f"datasets not available at {root} (set RECSYS_DATA_DIR)")
    return root
