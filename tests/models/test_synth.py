"""The synthetic shop: deterministic, sized as asked, with popularity and sequence structure."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from models.catalog import load_catalog
from models.data import load_interactions
from models.synth import SynthConfig, event_blocks, make_shop, write_shop

SMALL = SynthConfig(items=500, users=400, events=12_000, seed=5)


def _digest(directory: Path) -> str:
    """A hash of the events and catalog files."""
    files = (directory / "events.csv", directory / "catalog.jsonl")
    return hashlib.sha256(b"".join(f.read_bytes() for f in files)).hexdigest()


def test_same_seed_same_files_other_seed_other_files(tmp_path: Path) -> None:
    write_shop(SMALL, tmp_path / "a")
    write_shop(SMALL, tmp_path / "b")
    write_shop(SynthConfig(items=500, users=400, events=12_000, seed=6), tmp_path / "c")
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    assert _digest(tmp_path / "a") != _digest(tmp_path / "c")


def test_files_load_with_the_sizes_asked(tmp_path: Path) -> None:
    summary = write_shop(SMALL, tmp_path)
    rows = load_interactions(tmp_path / "events.csv")
    catalog = load_catalog(tmp_path / "catalog.jsonl")
    assert summary["events"] == len(rows.user_ids) == SMALL.events
    assert len(set(rows.user_ids.tolist())) == SMALL.users  # events >= users: everyone active
    assert len(catalog) == SMALL.items and all(item.title and item.categories for item in catalog)
    assert set(rows.item_ids.tolist()) <= {item.item_id for item in catalog}
    assert rows.types is not None and rows.values is not None
    purchases = rows.types == "purchase"
    assert purchases.any() and (rows.types == "view").mean() > 0.5
    assert np.isfinite(rows.values[purchases]).all() and np.isnan(rows.values[~purchases]).all()


def _events(config: SynthConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All users' (user, item, timestamp), in generation order."""
    blocks = list(event_blocks(config, make_shop(config)))
    return tuple(
        np.concatenate([getattr(b, f) for b in blocks]) for f in ("user", "item", "timestamp")
    )  # type: ignore[return-value]


def test_times_increase_per_user_within_the_history() -> None:
    user, _, stamp = _events(SMALL)
    same_user = user[1:] == user[:-1]
    assert (np.diff(stamp)[same_user] > 0).all()
    span_days = (stamp.max() - stamp.min()) / 86_400
    assert 30 < span_days <= SMALL.days + 1  # within the window: never in the future


def test_sessions_follow_successors_and_popularity_is_skewed() -> None:
    config = SynthConfig(items=2000, users=1000, events=40_000, seed=1)
    shop = make_shop(config)
    user, item, stamp = _events(config)
    in_session = (user[1:] == user[:-1]) & (np.diff(stamp) < 1800)
    previous, following = item[:-1][in_session], item[1:][in_session]
    category = shop.category[previous]
    step = (following - shop.start[category]) - (previous - shop.start[category])
    successor = np.isin(step % shop.size[category], (1, 2)) & (shop.category[following] == category)
    # p_successor of the steps, plus a few popular draws that land on a successor by chance
    assert config.p_successor - 0.05 < successor.mean() < config.p_successor + 0.15
    counts = np.sort(np.bincount(item, minlength=config.items))[::-1]
    assert counts[: config.items // 100].sum() > 0.1 * len(item)  # the top 1% take > 10%


def test_refuses_impossible_configs(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="items"):
        write_shop(SynthConfig(items=0, users=1, events=1), tmp_path)
    with pytest.raises(ValueError, match="p_successor"):
        write_shop(SynthConfig(items=5, users=1, events=1, p_successor=0.9), tmp_path)


def test_first_histories_reads_the_first_users_in_file_order(tmp_path: Path) -> None:
    from models.synth import first_histories

    write_shop(SMALL, tmp_path)
    rows = [line.split(",") for line in (tmp_path / "events.csv").read_text().splitlines()[1:]]
    users = list(dict.fromkeys(row[1] for row in rows))[:3]
    item_ids = sorted({row[2] for row in rows})
    found = first_histories(tmp_path / "events.csv", item_ids, 3)
    for user, history in zip(users, found, strict=True):
        expected = [item_ids.index(row[2]) for row in rows if row[1] == user]
        assert history.tolist() == expected
    unknown = first_histories(tmp_path / "events.csv", item_ids[:1], 3)
    assert all(set(h.tolist()) == {0} for h in unknown)  # other items left out
