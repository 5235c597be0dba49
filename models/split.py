"""k-core filtering, chronological leave-one-out, temporal splits, retrain's hold-out, the
split shifted one step back (for choosing a protocol without reading test) and the cold-item
split (items no model has seen in training, for content and hybrid models)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from models.data import (
    EvalSet,
    IdMap,
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
    "cold_item_split",
    "cold_test_users",
    "holdout_split",
    "kcore_filter",
    "leave_one_out_rows",
    "load_dataset",
    "shift_back",
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


def holdout_split(
    user_ids: Sequence[str],
    item_ids: Sequence[str],
    users: np.ndarray,
    items: np.ndarray,
    times_us: np.ndarray,
    min_events: int = 3,
    weights: np.ndarray | None = None,
) -> LeaveOneOut:
    """Events -> each user's latest distinct item held out for validation (retraining).

    `users`/`items` are int64 codes into `user_ids`/`item_ids` (in any order, e.g. arrival),
    `times_us` int64 microseconds. A user's repeated items are dropped (the first kept); users
    with fewer than `min_events` distinct items are left out and items re-indexed to those that
    remain. Test targets are unknown (-1): retraining only validates. `weights` (N,): each
    event's training weight; a kept (user, item) pair takes the largest weight of its events
    (a view then a purchase of an item weighs as the purchase), none: no weights.
    """
    # Index by the ids' natural order, not their arrival order: concurrent ingestion stores the
    # same events in a different order each time, and the indices decide the initialisation.
    user_map, item_map = IdMap.sorted_from(user_ids), IdMap.sorted_from(item_ids)
    users = user_map.indices(user_ids)[np.asarray(users, dtype=np.int64)]
    items = item_map.indices(item_ids)[np.asarray(items, dtype=np.int64)]
    times = np.asarray(times_us, dtype=np.int64)
    order = np.lexsort((np.arange(len(users)), times, users))  # by user, time, arrival
    users, items, times = users[order], items[order], times[order]
    keys = users * len(item_map) + items
    _, first, pair = np.unique(keys, return_index=True, return_inverse=True)
    keep = np.sort(first)
    pair_weights = None
    if weights is not None:  # the largest weight of each pair, at its first event's place
        largest = np.full(len(first), -np.inf)
        np.maximum.at(largest, pair.reshape(-1), np.asarray(weights, np.float64)[order])
        pair_weights = largest[pair.reshape(-1)[keep]]
    users, items, times = users[keep], items[keep], times[keep]
    kept_user = np.bincount(users, minlength=len(user_map))[users] >= min_events
    split = _held_out(user_map, item_map, users[kept_user], items[kept_user], times[kept_user])
    if pair_weights is not None:
        kept_weights = pair_weights[kept_user]
        _, starts = np.unique(users[kept_user], return_index=True)
        per_user = np.split(kept_weights, starts[1:]) if len(starts) else []
        split.train_weights = [w[:-1] for w in per_user]
        split.val_weights = np.array([w[-1] for w in per_user], dtype=np.float64)
    split.meta = {"source": "events", "min_events": min_events}
    return split


def _held_out(
    user_map: IdMap, item_map: IdMap, users: np.ndarray, items: np.ndarray, times: np.ndarray
) -> LeaveOneOut:
    """Sorted, de-duplicated events -> items re-indexed, each user's last one as validation."""
    item_codes, items = np.unique(items, return_inverse=True)
    user_codes, starts = np.unique(users, return_index=True)
    cuts = starts[1:]
    histories = np.split(items.astype(np.int64), cuts) if len(starts) else []
    seconds = np.split(times // 1_000_000, cuts) if len(starts) else []  # stored in microseconds
    val = np.array([h[-1] for h in histories], dtype=np.int64)
    return LeaveOneOut(
        user_ids=IdMap(user_map.ids[u] for u in user_codes),
        item_ids=IdMap(item_map.ids[i] for i in item_codes),
        train=[h[:-1] for h in histories],
        val=val,
        test=np.full(len(val), -1, dtype=np.int64),
        train_times=[t[:-1] for t in seconds],
        val_times=np.array([t[-1] for t in seconds], dtype=np.int64),
    )


def shift_back(data: LeaveOneOut) -> LeaveOneOut:
    """The split moved one step back: each user's last train item -> val, val -> test.

    Tuning on it never reads the real test items; every user needs two train items."""
    short = sum(len(h) < 2 for h in data.train)
    if short:  # a user with a single train item cannot give one up
        raise ValueError(f"{short} users have fewer than 2 train items")
    times, weights = data.train_times, data.train_weights
    return LeaveOneOut(
        user_ids=data.user_ids,
        item_ids=data.item_ids,
        train=[h[:-1] for h in data.train],
        val=np.array([h[-1] for h in data.train], dtype=np.int64),
        test=data.val.copy(),
        meta={**data.meta, "shifted": True},
        train_times=None if times is None else [t[:-1] for t in times],
        val_times=None if times is None else np.array([t[-1] for t in times], dtype=np.int64),
        test_times=data.val_times,
        train_weights=None if weights is None else [w[:-1] for w in weights],
        val_weights=None if weights is None else np.array([w[-1] for w in weights]),
    )


def cold_item_split(
    data: LeaveOneOut, fraction: float = 0.1, min_count: int = 5, seed: int = 0
) -> tuple[LeaveOneOut, np.ndarray]:
    """The split with a fraction of the items made cold, and those items' indices (sorted).

    Recipe (bench/results/cold_items/README.md):
    1. count each item's interactions over train + val + test (one count per row);
    2. the eligible items are those with at least `min_count`, in index order; draw
       round(fraction x their number) of them with `np.random.default_rng(seed).choice(...,
       replace=False)` and sort them: the cold items;
    3. remove the cold items, with their timestamps, from every train history;
    4. a user whose val item is cold gets the last train item left as val (with its time), so
       val is still the item just before test in what remains; a user with no train item left
       for it is dropped from the split (train, val and test);
    5. test is kept as it is, and so is the catalog: every model ranks all items, cold ones
       included. The test users whose target is cold form the cold slice (`cold_test_users`),
       the others the warm slice.
    No cold item is in any train or val history or val target: a model meets them in test only.
    """
    counts = _item_counts(data)
    eligible = np.flatnonzero(counts >= min_count)
    size = round(fraction * len(eligible))
    cold = np.sort(np.random.default_rng(seed).choice(eligible, size=size, replace=False))
    is_cold = np.zeros(data.num_items, dtype=bool)
    is_cold[cold] = True
    split = _without_items(data, is_cold)
    recipe = {"fraction": fraction, "min_count": min_count, "seed": seed, "items": size}
    split.meta = {**data.meta, "cold_items": recipe}
    return split, cold.astype(np.int64)


def cold_test_users(data: LeaveOneOut, cold_items: np.ndarray) -> np.ndarray:
    """Which test users' target is a cold item: (U,) bool (the cold slice; the rest is warm)."""
    return np.isin(data.test, cold_items) & (data.test >= 0)


def _item_counts(data: LeaveOneOut) -> np.ndarray:
    """Interactions per item over train, val and test: (I,) int64 (-1 targets not counted)."""
    targets = np.concatenate([data.val, data.test])
    flat = np.concatenate([np.zeros(0, np.int64), *data.train, targets[targets >= 0]])
    return np.bincount(flat, minlength=data.num_items).astype(np.int64)


def _without_items(data: LeaveOneOut, removed: np.ndarray) -> LeaveOneOut:
    """Steps 3 and 4 of `cold_item_split`: `removed` (I,) bool out of train and val."""
    kept = [~removed[h] for h in data.train]
    times, weights = data.train_times, data.train_weights
    split = dataclasses.replace(
        data,
        train=[h[m] for h, m in zip(data.train, kept, strict=True)],
        val=data.val.copy(),
        train_times=None if times is None else [t[m] for t, m in zip(times, kept, strict=True)],
        val_times=None if data.val_times is None else data.val_times.copy(),
        train_weights=None
        if weights is None
        else [w[m] for w, m in zip(weights, kept, strict=True)],
        val_weights=None if data.val_weights is None else data.val_weights.copy(),
    )
    moved = (data.val >= 0) & removed[np.maximum(data.val, 0)]
    stranded = moved & np.array([not len(h) for h in split.train], dtype=bool)
    for user in np.flatnonzero(moved & ~stranded):
        _last_train_to_val(split, int(user))
    return _users(split, ~stranded) if stranded.any() else split


def _last_train_to_val(data: LeaveOneOut, user: int) -> None:
    """In place: the user's last train item (and its time) becomes the val item."""
    data.val[user], data.train[user] = data.train[user][-1], data.train[user][:-1]
    if data.train_times is not None and data.val_times is not None:
        stamps = data.train_times[user]
        data.val_times[user], data.train_times[user] = stamps[-1], stamps[:-1]
    if data.train_weights is not None and data.val_weights is not None:
        weights = data.train_weights[user]
        data.val_weights[user], data.train_weights[user] = weights[-1], weights[:-1]


def _users(data: LeaveOneOut, keep: np.ndarray) -> LeaveOneOut:
    """The split restricted to the users where `keep` (U,) bool is True."""
    rows = np.flatnonzero(keep)
    times, weights = data.train_times, data.train_weights
    return dataclasses.replace(
        data,
        user_ids=IdMap(data.user_ids.ids[u] for u in rows),
        train=[data.train[u] for u in rows],
        val=data.val[rows],
        test=data.test[rows],
        train_times=None if times is None else [times[u] for u in rows],
        val_times=None if data.val_times is None else data.val_times[rows],
        test_times=None if data.test_times is None else data.test_times[rows],
        train_weights=None if weights is None else [weights[u] for u in rows],
        val_weights=None if data.val_weights is None else data.val_weights[rows],
    )
