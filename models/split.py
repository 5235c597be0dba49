"""k-core filtering, chronological leave-one-out and temporal splits of an interaction table."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from models.data import (
    EvalSet,
    Interactions,
    LeaveOneOut,
    is_split_dir,
    load_interactions,
    load_split_dir,
    resolve_data_path,
)

__all__ = [
    "EvalSet",
    "LeaveOneOut",
    "build_leave_one_out",
    "kcore_filter",
    "leave_one_out_rows",
    "load_dataset",
    "temporal_split",
]


def _counts_per_row(ids: np.ndarray) -> np.ndarray:
    """For every row, how many rows share its id: (N,) int64."""
    _, inverse, counts = np.unique(ids, return_inverse=True, return_counts=True)
    return counts[inverse.reshape(-1)]


def kcore_filter(data: Interactions, k: int = 5, iterative: bool = False) -> Interactions:
    """Drop users and items with fewer than k interactions.

    Single pass by default, as in the SASRec preprocessing: both counts are taken once on the
    input, so a survivor may end with fewer than k rows. `iterative=True` repeats the pass until
    every user and item has at least k (a true k-core).
    """
    while True:
        keep = (_counts_per_row(data.user_ids) >= k) & (_counts_per_row(data.item_ids) >= k)
        if keep.all():
            return data
        data = data.take(keep)
        if not iterative:
            return data


def _chronological_order(data: Interactions) -> tuple[np.ndarray, np.ndarray]:
    """Row order grouped by user (first-appearance order), by timestamp, ties in file order."""
    _, first_row, user_code = np.unique(data.user_ids, return_index=True, return_inverse=True)
    appearance = np.argsort(np.argsort(first_row, kind="stable"), kind="stable")
    user_rank = appearance[user_code.reshape(-1)]  # (N,) the user's rank by first appearance
    order = np.lexsort((data.timestamps, user_rank))  # stable: equal timestamps keep file order
    return order, user_rank[order]


def leave_one_out_rows(
    data: Interactions, min_interactions: int = 3
) -> tuple[Interactions, Interactions, Interactions]:
    """Split rows per user: last by time -> test, second-to-last -> val, rest -> train.

    Users with fewer than `min_interactions` rows (at least 3: one each for train, val, test)
    are dropped. Rows come out grouped by user in first-appearance order, chronological inside.
    """
    min_interactions = max(min_interactions, 3)
    order, user_of_row = _chronological_order(data)
    ends = np.flatnonzero(np.diff(user_of_row, append=-1))  # last sorted row of each user
    lengths = np.diff(np.concatenate([[-1], ends]))  # rows per user
    long_enough = lengths >= min_interactions
    in_kept_user = np.repeat(long_enough, lengths)  # (N,) per sorted row
    ends = ends[long_enough]
    is_test = np.zeros(len(order), dtype=bool)
    is_test[ends] = True
    is_val = np.zeros(len(order), dtype=bool)
    is_val[ends - 1] = True
    is_train = in_kept_user & ~is_test & ~is_val
    return data.take(order[is_train]), data.take(order[is_val]), data.take(order[is_test])


def build_leave_one_out(data: Interactions, k: int = 5) -> LeaveOneOut:
    """Raw interactions -> single-pass k-core -> chronological leave-one-out, indexed."""
    filtered = kcore_filter(data, k) if k > 1 else data
    split = LeaveOneOut.from_rows(*leave_one_out_rows(filtered))
    split.meta = {"kcore": k, "raw_rows": len(data), "rows": len(filtered)}
    return split


def temporal_split(
    data: Interactions, cutoff: int | None = None, test_fraction: float = 0.1
) -> tuple[Interactions, Interactions]:
    """Global time split: rows before `cutoff` train, the rest test.

    Without a cutoff, it is the timestamp quantile that leaves `test_fraction` of rows for test.
    """
    if cutoff is None:
        cutoff = int(np.quantile(data.timestamps, 1.0 - test_fraction, method="higher"))
    before = data.timestamps < cutoff
    return data.take(before), data.take(~before)


def load_dataset(path: str | Path, k: int = 5) -> LeaveOneOut:
    """A split directory as stored, or a raw ratings file -> k-core + leave-one-out."""
    resolved = resolve_data_path(path)
    if resolved.is_dir():
        if not is_split_dir(resolved):
            raise FileNotFoundError(f"{resolved}: not a split directory (train/val/test files)")
        return load_split_dir(resolved)
    split = build_leave_one_out(load_interactions(resolved), k=k)
    split.meta["source"] = str(resolved)
    return split
