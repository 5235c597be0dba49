"""research.cold_check on tiny generated data: cold and warm validation slices logged."""

from __future__ import annotations

import json
from pathlib import Path

from research import cold_check
from tests.models.conftest import write_ratings_csv


def test_cold_check_logs_the_cold_and_warm_validation_slices(tmp_path: Path) -> None:
    ratings = write_ratings_csv(tmp_path / "ratings.csv")
    catalog = tmp_path / "catalog.csv"
    catalog.write_text("item_id,title\n" + "\n".join(f"{i},Film {i}" for i in range(1, 26)))
    log = tmp_path / "cold.jsonl"
    args = ["--model", "mf-hybrid", "--data", str(ratings), "--catalog", str(catalog)]
    args += ["--content-cache", str(tmp_path / "cache")]
    args += ["--cold-scales", "1,2", "--fraction", "0.2", "--log", str(log)]
    cold_check.main([*args, "--set", "iterations=2"])
    [row] = [json.loads(line) for line in log.read_text().splitlines()]
    assert row["cold_items"] == 5 and row["overrides"] == {"iterations": "2"}
    for key in ("val_cold", "val_warm", "val_all", "shifted_val"):
        assert set(row[key]) == {"ndcg@10", "hr@10"}
    same = row["cold_scales"]["1.0"]  # the fitted scale: the model's own numbers
    assert same["cold"] == row["val_cold"] and same["warm"] == row["val_warm"]
    assert same["all"] == row["val_all"] and set(row["cold_scales"]["2.0"]) == {
        "cold",
        "warm",
        "all",
    }
