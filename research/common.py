"""What the research tools share: where their logs go and validation-only data loading."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from models.data import IdMap, LeaveOneOut, is_split_dir, load_train_val, resolve_data_path
from models.split import load_dataset

RESULTS = Path(__file__).parent / "results"


def load_validation(path: str | Path) -> LeaveOneOut:
    """A dataset's train and val only: a split directory's test file is never opened, a raw
    ratings file's test items are dropped after the split (every test target -1)."""
    resolved = resolve_data_path(path)
    if is_split_dir(resolved):
        return load_train_val(resolved)
    data = load_dataset(resolved)
    unknown = np.full(data.num_users, -1, dtype=np.int64)
    meta = {**data.meta, "test": "not read"}
    return dataclasses.replace(data, test=unknown, test_times=None, meta=meta)


def rounded(metrics: dict[str, float], keys: tuple[str, ...]) -> dict[str, float]:
    """The named metrics rounded to 4 places."""
    return {k: round(metrics[k], 4) for k in keys}


def catalog_features(
    item_ids: IdMap, catalog: str | Path | None, cache: str | Path = "var/content-cache"
) -> np.ndarray | None:
    """The items' text vectors (I, F) from a catalog (models.content: the packaged encoder,
    vectors cached on disk), or None without a catalog."""
    if catalog is None:
        return None
    from models.content import TextEncoder, VectorCache, item_features, load_item_texts

    features, _ = item_features(
        item_ids, load_item_texts(catalog), TextEncoder(), VectorCache(cache)
    )
    return features
