"""The cold-item split (models.split.cold_item_split) and the comparison's cold and warm slices."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from models.compare import ContentInputs, compare_models
from models.data import IdMap, LeaveOneOut
from models.split import cold_item_split, cold_test_users, load_dataset
from tests.models.conftest import random_loo

# ml1m-half-loo's cold split (fraction 0.1, min_count 5, seed 0), as committed in
# bench/results/cold_items: sha256 of the cold item ids ("," joined) and the split's fingerprint.
ML1M_COLD_IDS_SHA256 = "fb137419e1d6cf6b36f8e091fde6c6829fb978b4c7ee17d4bff3ba11e9c277d5"
ML1M_COLD_FINGERPRINT = "0d9e4a35e911f8419920ebb7e0ea45839337db23711ce1b0c078aeb30c83c392"


def _counts(data: LeaveOneOut) -> np.ndarray:
    """Interactions per item over train, val and test."""
    flat = np.concatenate([*data.train, data.val, data.test])
    return np.bincount(flat, minlength=data.num_items)


def test_cold_items_leave_train_and_val_and_stay_in_the_catalog() -> None:
    data = random_loo()
    split, cold = cold_item_split(data, fraction=0.2, min_count=5, seed=0)
    eligible = np.flatnonzero(_counts(data) >= 5)
    assert len(cold) == round(0.2 * len(eligible)) and set(cold) <= set(eligible)
    assert np.all(np.diff(cold) > 0)
    assert not np.isin(np.concatenate(split.train), cold).any()
    assert not np.isin(split.val, cold).any()
    assert split.item_ids == data.item_ids and split.user_ids == data.user_ids
    np.testing.assert_array_equal(split.test, data.test)
    assert split.meta["cold_items"] == {"fraction": 0.2, "min_count": 5, "seed": 0, "items": 8}
    np.testing.assert_array_equal(cold_test_users(split, cold), np.isin(data.test, cold))


def test_a_cold_val_target_is_replaced_by_the_last_train_item_left() -> None:
    data = random_loo()
    split, cold = cold_item_split(data, fraction=0.2, seed=0)
    assert data.train_times is not None and split.train_times is not None
    assert data.val_times is not None and split.val_times is not None
    moved = np.flatnonzero(np.isin(data.val, cold))
    assert len(moved)
    for user in moved:
        left = ~np.isin(data.train[user], cold)
        kept, stamps = data.train[user][left], data.train_times[user][left]
        assert split.val[user] == kept[-1] and split.val_times[user] == stamps[-1]
        np.testing.assert_array_equal(split.train[user], kept[:-1])
        np.testing.assert_array_equal(split.train_times[user], stamps[:-1])
    for user in np.flatnonzero(~np.isin(data.val, cold)):
        assert split.val[user] == data.val[user]
        assert len(split.train_times[user]) == len(split.train[user])


def test_the_split_is_rebuilt_exactly_from_its_seed() -> None:
    first, cold = cold_item_split(random_loo(), seed=3)
    again, cold_again = cold_item_split(random_loo(), seed=3)
    assert first.fingerprint() == again.fingerprint() and cold.tolist() == cold_again.tolist()
    other, cold_other = cold_item_split(random_loo(), seed=4)
    assert cold_other.tolist() != cold.tolist() and other.fingerprint() != first.fingerprint()


def test_a_user_left_without_a_val_item_is_dropped() -> None:
    data = LeaveOneOut(
        user_ids=IdMap(["a", "b", "c"]),
        item_ids=IdMap(["i0", "i1", "i2", "i3"]),
        train=[np.array([0, 1]), np.array([0]), np.array([2, 1])],
        val=np.array([2, 0, 0]),
        test=np.array([0, 1, 3]),
    )
    split, cold = cold_item_split(data, fraction=1.0, min_count=5)
    assert cold.tolist() == [0]  # the one item with 5 interactions
    assert split.user_ids.ids == ["a", "c"]  # b: val cold, no train item left to take its place
    assert [h.tolist() for h in split.train] == [[1], [2]]
    assert split.val.tolist() == [2, 1] and split.test.tolist() == [0, 3]


def test_ml1m_cold_split_is_the_published_one(data_dir: Path) -> None:
    path = data_dir / "ml1m-half-loo"
    if not path.is_dir():
        pytest.skip("ml1m-half-loo not available")
    split, cold = cold_item_split(load_dataset(path))
    ids = ",".join(split.item_ids.ids[i] for i in cold)
    assert len(cold) == 327 and int(cold_test_users(split, cold).sum()) == 332
    assert hashlib.sha256(ids.encode()).hexdigest() == ML1M_COLD_IDS_SHA256
    assert split.fingerprint() == ML1M_COLD_FINGERPRINT
    assert split.num_users == 2999 and split.num_items == 3266


def test_compare_reports_the_cold_and_warm_slices(tmp_path: Path) -> None:
    split, cold = cold_item_split(random_loo(), fraction=0.2)
    rng = np.random.default_rng(0)
    features = rng.normal(size=(split.num_items, 6)).astype(np.float32)
    content = ContentInputs(features=features, meta={"catalog": "generated", "encoder": "none"})
    names = ["popularity", "content"]
    compare_models(split, names, tmp_path, content=content, cold_items=cold)
    payload = json.loads((tmp_path / "compare.json").read_text())
    assert payload["content"] == content.meta and payload["dataset"]["cold_items"]["items"] == 8
    users = cold_test_users(split, cold)
    for row in payload["rows"]:
        assert set(row["test_cold"]) == set(row["test_warm"]) == set(row["test"])
        mixed = (
            users.mean() * row["test_cold"]["hr@10"]
            + (1 - users.mean()) * row["test_warm"]["hr@10"]
        )
        assert mixed == pytest.approx(row["test"]["hr@10"])
    assert "## Test: cold items" in (tmp_path / "compare.md").read_text()
    assert (tmp_path / "cold_vs_warm.png").is_file()
    meta_path = tmp_path / "checkpoints" / "content" / "seed-0" / "meta.json"
    meta = json.loads(meta_path.read_text())
    assert meta["content"] == content.meta and meta["content_encoder"] == "none"


def test_a_standard_compare_has_no_slices(tmp_path: Path) -> None:
    compare_models(random_loo(), ["popularity"], tmp_path)
    [row] = json.loads((tmp_path / "compare.json").read_text())["rows"]
    assert "test_cold" not in row and "test_warm" not in row
    assert not (tmp_path / "cold_vs_warm.png").exists()
