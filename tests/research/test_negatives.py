"""research.negatives on tiny generated ratings: each option fit and logged on validation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from research import negatives


def write_ratings(path: Path, users: int = 30, items: int = 25, seed: int = 0) -> Path:
    """A ratings.csv with every rating 1-5, each user rating 14 of the items."""
    rng = np.random.default_rng(seed)
    lines = ["userId,movieId,rating,timestamp"]
    for user in range(1, users + 1):
        for t, item in enumerate(rng.choice(np.arange(1, items + 1), size=14, replace=False)):
            lines.append(f"{user},{item},{rng.integers(1, 6)}.0,{1000 + 10 * t}")
    path.write_text("\n".join(lines) + "\n")
    return path


def test_negatives_logs_every_option_on_the_same_targets(tmp_path: Path) -> None:
    ratings = write_ratings(tmp_path / "ratings.csv")
    log = tmp_path / "negatives.jsonl"
    args = ["--data", str(ratings), "--log", str(log), "--set", "iterations=2"]
    negatives.main([*args, "--options", "as-positives,leave-out"])
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    assert [r["option"] for r in rows] == ["as-positives", "leave-out"]
    assert rows[0]["dislikes"] > 0 and rows[0]["users"] == rows[1]["users"] > 0
    for row in rows:
        assert set(row["val"]) == {"ndcg@10", "hr@10"} and 0 <= row["val"]["hr@10"] <= 1


def test_dislikes_come_before_each_users_validation_item(tmp_path: Path) -> None:
    data = negatives.load_feedback(write_ratings(tmp_path / "ratings.csv"))
    liked = negatives.rating_polarity(np.array([1.0, 2.0, 3.0, 4.0, 5.0]))
    assert liked.tolist() == [-1, -1, 0, 1, 1]
    assert data.split.val_times is not None and bool((data.split.test < 0).all())
    assert any(len(d) for d in data.dislikes)
    for user, disliked in enumerate(data.dislikes):
        assert not set(disliked.tolist()) & set(data.split.train[user].tolist())
