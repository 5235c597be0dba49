"""Loaders, id maps, k-core, leave-one-out, temporal split, retrain's hold-out, the shifted split
and the benchmark split reproduction."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from models.data import (
    IdMap,
    Interactions,
    LeaveOneOut,
    dataset_name,
    default_data_dir,
    load_interactions,
    load_split_dir,
    load_train_val,
)
from models.split import (
    build_leave_one_out,
    holdout_split,
    kcore_filter,
    leave_one_out_rows,
    load_dataset,
    shift_back,
    temporal_split,
)
from tests.models.conftest import random_loo, write_ratings_csv

ROWS = [("1", "10", 5), ("1", "11", 3), ("2", "10", 4)]


def _table(rows: list[tuple[str, str, int]]) -> Interactions:
    users, items, stamps = zip(*rows, strict=True)
    return Interactions(np.array(users), np.array(items), np.array(stamps, dtype=np.int64))


def test_idmap_round_trip_and_lookup() -> None:
    ids = IdMap(["b", "a", "b", "c"])
    assert ids.ids == ["b", "a", "c"] and len(ids) == 3 and "a" in ids
    assert ids.index("c") == 2 and ids.get("zz") == -1
    assert ids.indices(["a", "x"], default=-1).tolist() == [1, -1]
    assert IdMap.from_json(ids.to_json()) == ids
    with pytest.raises(KeyError):
        ids.index("zz")
    with pytest.raises(ValueError):
        IdMap.from_json(["a", "a"])


def test_sorted_idmap_is_numeric_for_integer_ids() -> None:
    assert IdMap.sorted_from(["10", "9", "100"]).ids == ["9", "10", "100"]
    assert IdMap.sorted_from(["b", "a10", "a9"]).ids == ["a10", "a9", "b"]


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("u.data", "1\t10\t4\t5\n1\t11\t2\t3\n2\t10\t5\t4\n"),
        ("ratings.dat", "1::10::4::5\n1::11::2::3\n2::10::5::4\n"),
        ("ratings.csv", "userId,movieId,rating,timestamp\n1,10,4,5\n1,11,2,3\n2,10,5,4\n"),
        ("events.tsv", "user_id\titem_id\ttimestamp\n1\t10\t5\n1\t11\t3\n2\t10\t4\n"),
        (
            "events.csv",
            "item_id,user_id,timestamp,type,value\n10,1,5,view,1\n11,1,3,buy,2\n10,2,4,view,1\n",
        ),
    ],
)
@pytest.mark.parametrize("gz", [False, True])
def test_loaders_read_every_format(tmp_path: Path, name: str, text: str, gz: bool) -> None:
    path = tmp_path / (name + (".gz" if gz else ""))
    if gz:
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)
    table = load_interactions(path)
    assert list(zip(table.user_ids, table.item_ids, table.timestamps.tolist(), strict=True)) == ROWS
    assert table.timestamps.dtype == np.int64
    if name == "events.csv":
        assert table.types is not None and table.types.tolist() == ["view", "buy", "view"]
        assert table.values is not None and table.values.tolist() == [1.0, 2.0, 1.0]


def test_missing_timestamp_column_uses_file_order(tmp_path: Path) -> None:
    path = tmp_path / "events.csv"
    path.write_text("user_id,item_id\na,x\na,y\n")
    assert load_interactions(path).timestamps.tolist() == [0, 1]


def test_iso_timestamps(tmp_path: Path) -> None:
    path = tmp_path / "events.csv"
    path.write_text("user_id,item_id,timestamp\na,x,1970-01-01T00:00:10+00:00\n")
    assert load_interactions(path).timestamps.tolist() == [10]


def test_kcore_single_pass_counts_once_on_raw_data() -> None:
    # user u1 has 2 rows, one on item "rare" (1 row). k=2: "rare" goes; u1 keeps 1 row in a
    # single pass (counted on raw data), and disappears only with the iterative filter.
    rows = [("u1", "rare", 1), ("u1", "pop", 2), ("u2", "pop", 3), ("u2", "x", 4), ("u3", "x", 5)]
    rows += [("u3", "pop", 6)]
    once = kcore_filter(_table(rows), k=2)
    assert sorted(zip(once.user_ids, once.item_ids, strict=True)) == [
        ("u1", "pop"),
        ("u2", "pop"),
        ("u2", "x"),
        ("u3", "pop"),
        ("u3", "x"),
    ]
    full = kcore_filter(_table(rows), k=2, iterative=True)
    assert "u1" not in full.user_ids.tolist()


def test_leave_one_out_is_chronological_with_ties_in_file_order() -> None:
    rows = [("a", "i3", 30), ("a", "i1", 10), ("b", "i1", 5), ("a", "i2", 20), ("a", "i4", 20)]
    rows += [("b", "i2", 5), ("b", "i3", 5), ("c", "i1", 1), ("c", "i2", 2)]  # c: too short
    train, val, test = leave_one_out_rows(_table(rows))
    assert list(zip(train.user_ids, train.item_ids, strict=True)) == [
        ("a", "i1"),
        ("a", "i2"),
        ("b", "i1"),
    ]
    assert val.item_ids.tolist() == ["i4", "i2"] and test.item_ids.tolist() == ["i3", "i3"]
    assert val.user_ids.tolist() == ["a", "b"]


def test_leave_one_out_dataset_protocol_sets() -> None:
    rows = [("a", "i1", 1), ("a", "i2", 2), ("a", "i3", 3), ("a", "i4", 4), ("b", "i2", 1)]
    rows += [("b", "i3", 2), ("b", "i1", 3)]
    data = build_leave_one_out(_table(rows), k=1)
    assert data.num_users == 2 and data.num_items == 4 and data.num_interactions == 7
    a = data.user_ids.index("a")
    assert data.item_ids.ids == ["i1", "i2", "i3", "i4"]
    assert data.train[a].tolist() == [0, 1] and data.val[a] == 2 and data.test[a] == 3
    assert data.val_set().histories[a].tolist() == [0, 1]
    assert data.test_set().histories[a].tolist() == [0, 1, 2]
    assert data.test_set().targets[a] == 3
    assert data.item_popularity().tolist() == [1, 2, 0, 0]


def test_with_item_ids_drops_unknown_items() -> None:
    rows = [("a", "i1", 1), ("a", "i2", 2), ("a", "i3", 3), ("a", "i4", 4)]
    data = build_leave_one_out(_table(rows), k=1)
    remapped = data.with_item_ids(IdMap(["i4", "i1", "zz"]))
    assert remapped.train[0].tolist() == [1] and remapped.val[0] == -1 and remapped.test[0] == 0
    assert remapped.test_set().histories[0].tolist() == [1]
    assert remapped.train_times is not None and remapped.train_times[0].tolist() == [1]


def test_times_follow_the_items_ties_in_file_order() -> None:
    rows = [("a", "i3", 30), ("a", "i1", 10), ("a", "i2", 20), ("a", "i4", 20), ("a", "i5", 40)]
    rows += [("b", "i2", 5), ("b", "i3", 7), ("b", "i1", 6)]
    data = build_leave_one_out(_table(rows), k=1)
    a, b = data.user_ids.index("a"), data.user_ids.index("b")
    items = data.item_ids.ids
    assert [items[i] for i in data.train[a]] == ["i1", "i2", "i4"]  # i2 before i4: file order
    assert data.train_times is not None and data.train_times[a].tolist() == [10, 20, 20]
    assert data.val_times is not None and data.test_times is not None
    assert (data.val_times[a], data.test_times[a]) == (30, 40)
    assert data.val_times[b] == 6 and data.test_times[b] == 7
    with_val = data.train_plus_val_times()
    assert with_val is not None and with_val[a].tolist() == [10, 20, 20, 30]
    assert [len(t) for t in with_val] == [len(h) for h in data.train_plus_val()]


def test_temporal_split_uses_a_global_cutoff() -> None:
    table = _table([("a", "x", t) for t in range(10)])
    train, test = temporal_split(table, cutoff=7)
    assert train.timestamps.max() < 7 <= test.timestamps.min() and len(test) == 3
    train, test = temporal_split(table, test_fraction=0.2)
    assert len(test) == 2


def test_load_dataset_from_raw_file(tmp_path: Path) -> None:
    data = load_dataset(write_ratings_csv(tmp_path / "ratings.csv"))
    assert data.num_users == 30 and len(data.val) == 30
    assert all(len(h) == 10 for h in data.train)


def test_load_split_dir_round_trip(tmp_path: Path) -> None:
    for name, rows in (
        ("train", "1\t10\t1\n1\t11\t2\n"),
        ("val", "1\t12\t3\n"),
        ("test", "1\t10\t4\n"),
    ):
        (tmp_path / f"{name}.tsv").write_text("user_id\titem_id\ttimestamp\n" + rows)
    data = load_split_dir(tmp_path)
    assert (
        data.train[0].tolist() == [0, 1] and data.val.tolist() == [2] and data.test.tolist() == [0]
    )


def test_load_train_val_never_needs_the_test_file(tmp_path: Path) -> None:
    (tmp_path / "train.tsv").write_text("user_id\titem_id\ttimestamp\n1\t10\t1\n1\t11\t2\n")
    (tmp_path / "val.tsv").write_text("user_id\titem_id\ttimestamp\n1\t12\t3\n")
    data = load_train_val(tmp_path)  # there is no test file to read
    assert data.train[0].tolist() == [0, 1] and data.val.tolist() == [2]
    assert data.test.tolist() == [-1] and data.meta["test"] == "not read"


@pytest.mark.dataset
def test_reproduces_the_benchmark_split_row_for_row(data_dir: Path) -> None:
    raw_path = data_dir / "ml-1m-subset-cs100" / "ratings.dat.gz"
    split_dir = data_dir / "ml1m-half-loo"
    if not raw_path.is_file() or not split_dir.is_dir():
        pytest.skip("ml-1m-subset-cs100 or ml1m-half-loo not available")
    filtered = kcore_filter(load_interactions(raw_path), k=5)
    assert len(filtered) == 486_907
    ours = leave_one_out_rows(filtered)
    for table, stem in zip(ours, ("train.tsv.gz", "val.tsv", "test.tsv"), strict=True):
        given = load_interactions(split_dir / stem)
        np.testing.assert_array_equal(table.user_ids, given.user_ids)
        np.testing.assert_array_equal(table.item_ids, given.item_ids)
        np.testing.assert_array_equal(table.timestamps, given.timestamps)
    assert [len(t) for t in ours] == [480_909, 2_999, 2_999]
    built, stored = build_leave_one_out(load_interactions(raw_path)), load_split_dir(split_dir)
    assert (built.num_users, built.num_items) == (2_999, 3_266)
    assert built.fingerprint() == stored.fingerprint()


def holdout(rows: list[tuple[str, str, int]], min_events: int = 3) -> LeaveOneOut:
    """holdout_split of (user, item, microseconds) rows, ids interned in arrival order."""
    user_ids, item_ids = IdMap(r[0] for r in rows), IdMap(r[1] for r in rows)
    users = user_ids.indices([r[0] for r in rows])
    items = item_ids.indices([r[1] for r in rows])
    times = np.array([r[2] for r in rows], dtype=np.int64)
    return holdout_split(user_ids.ids, item_ids.ids, users, items, times, min_events)


def test_holdout_split_orders_dedupes_and_filters() -> None:
    split = holdout(
        [("a", "x", 3), ("a", "y", 1), ("a", "x", 5), ("a", "z", 4), ("b", "x", 1), ("b", "y", 2)]
    )  # b has 2 distinct items: left out
    assert split.user_ids.ids == ["a"]
    items = split.item_ids.ids
    assert [items[i] for i in split.train[0]] == ["y", "x"] and items[split.val[0]] == "z"
    assert split.test.tolist() == [-1]  # retraining only validates
    assert split.meta == {"source": "events", "min_events": 3}


def test_holdout_split_gives_the_seconds_of_the_kept_events() -> None:
    second = 1_000_000  # events store microseconds
    rows = [("a", "x", 3 * second), ("a", "y", second), ("a", "x", 5 * second)]
    split = holdout([*rows, ("a", "z", 4 * second)])
    assert split.train_times is not None and split.val_times is not None
    assert split.train_times[0].tolist() == [1, 3] and split.val_times.tolist() == [4]


def test_holdout_split_does_not_depend_on_arrival_order() -> None:
    rows = [(f"u{u}", f"i{(u * 7 + n) % 11}", n) for u in range(6) for n in range(5)]
    one, other = holdout(rows), holdout(rows[::-1])
    assert one.user_ids.ids == other.user_ids.ids and one.item_ids.ids == other.item_ids.ids
    assert [h.tolist() for h in one.train] == [h.tolist() for h in other.train]
    assert one.val.tolist() == other.val.tolist()
    assert one.item_ids.ids == sorted(one.item_ids.ids)  # string ids: lexicographic


def test_holdout_split_without_a_long_enough_user_is_empty() -> None:
    split = holdout([("a", "x", 1), ("a", "y", 2)])
    assert split.num_users == 0 and split.num_items == 0 and split.train == []


def test_shift_back_moves_every_target_one_step_back() -> None:
    data = random_loo()
    shifted = shift_back(data)
    assert [h.tolist() for h in shifted.train] == [h[:-1].tolist() for h in data.train]
    assert shifted.val.tolist() == [h[-1] for h in data.train]
    assert shifted.test.tolist() == data.val.tolist()  # the real test items are gone
    assert shifted.train_times is not None and data.train_times is not None
    assert shifted.val_times is not None and data.val_times is not None
    assert shifted.val_times.tolist() == [t[-1] for t in data.train_times]
    assert shifted.test_set().times is not None  # test inputs keep their times
    assert shifted.meta["shifted"] and shifted.user_ids == data.user_ids
    data.train[0] = data.train[0][:1]
    with pytest.raises(ValueError, match="1 users have fewer than 2 train items"):
        shift_back(data)


def test_dataset_name_is_never_an_absolute_path(tmp_path: Path) -> None:
    assert dataset_name(default_data_dir() / "ml1m-half-loo") == "ml1m-half-loo"
    assert dataset_name(default_data_dir() / "raw" / "ratings.dat") == "raw/ratings.dat"
    assert dataset_name(tmp_path / "ratings.csv") == "ratings.csv"
    assert dataset_name("random_loo") == "random_loo"


def test_val_set_samples_users_by_seed_with_their_own_rows() -> None:
    data = random_loo(users=60, items=40)
    whole, part = data.val_set(), data.val_set(max_users=20, seed=3)
    assert len(whole) == 60 and len(part) == 20
    rows = [next(u for u in range(60) if h is data.train[u]) for h in part.histories]
    assert rows == sorted(set(rows))  # distinct users, in user order
    assert np.array_equal(part.targets, data.val[rows])
    again, other = data.val_set(max_users=20, seed=3), data.val_set(max_users=20, seed=4)
    assert np.array_equal(again.targets, part.targets)  # the same seed, the same users
    assert [h is g for h, g in zip(again.histories, part.histories, strict=True)] == [True] * 20
    assert any(h is not g for h, g in zip(other.histories, part.histories, strict=True))
    assert len(data.val_set(max_users=500)) == 60  # more than there are: everyone
