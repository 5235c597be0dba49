"""research.neumf_foldin on tiny generated data: one log row per fold-in setting."""

from __future__ import annotations

import json
from pathlib import Path

from research import neumf_foldin
from tests.models.conftest import write_ratings_csv


def test_fold_settings_parse() -> None:
    assert neumf_foldin.fold_settings("10:0.05,3:1") == [(10, 0.05), (3, 1.0)]


def test_one_row_per_fold_setting(tmp_path: Path) -> None:
    ratings = write_ratings_csv(tmp_path / "ratings.csv")
    log = tmp_path / "foldin.jsonl"
    tiny = ["gmf_factors=4", "mlp_factors=4", "mlp_layers=8", "epochs=2"]
    args = ["--data", str(ratings), "--log", str(log), "--users", "10", "--fold", "2:0.1,4:0.1"]
    neumf_foldin.main([*args, *(x for item in tiny for x in ("--set", item))])
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    assert [r["config"]["fold_steps"] for r in rows] == [2, 4]
    assert all(r["users"] == 10 and 0 <= r["top10_overlap"] <= 1 for r in rows)
    assert all(0 <= r["val_ndcg@10_foldin"] <= 1 for r in rows)
