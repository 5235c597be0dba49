"""research.tune on tiny generated data: a grid appended to its log, and the log rendered."""

from __future__ import annotations

from pathlib import Path

import pytest

from research import tune
from tests.models.conftest import write_ratings_csv


def test_grid_is_the_product_of_the_set_values() -> None:
    assert tune.grid(["factors=4,8", "lr=0.1"]) == [
        {"factors": "4", "lr": "0.1"},
        {"factors": "8", "lr": "0.1"},
    ]
    assert tune.grid([]) == [{}]


def test_tune_appends_one_row_per_grid_point_and_renders(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ratings = write_ratings_csv(tmp_path / "ratings.csv")
    log = tmp_path / "tuning_mf.jsonl"
    args = ["--model", "mf", "--data", str(ratings), "--log", str(log), "--tag", "tiny"]
    tune.main([*args, "--set", "factors=4,6", "--set", "iterations=2"])
    rows = tune.read_log(log)
    assert [r["config"]["factors"] for r in rows] == [4, 6]
    assert all(r["tag"] == "tiny" and 0 <= r["val_ndcg@10"] <= 1 for r in rows)
    capsys.readouterr()
    tune.main(["--model", "mf", "--log", str(log), "--render"])
    table = capsys.readouterr().out.splitlines()
    assert table[0].startswith("| tag | factors | val NDCG@10 |") and len(table) == 4


def test_rows_of_the_old_tuners_still_render() -> None:
    old_mf = {  # bench/tune_mf.py: no val_hr@10, no load_avg, unrounded NDCG
        "tag": "g64a",
        "config": {"num_items": 3266, "factors": 64, "regularization": 0.01},
        "val_ndcg@10": 0.0334,
        "best_epoch": 8,
        "epochs": 8,
        "seconds": 14.31,
        "curve": [0.0056, 0.0334],
    }
    old_sasrec = {  # bench/tune_sasrec.py, with a field since removed
        "tag": "X1-pos-end",
        "config": {"num_items": 3266, "positions": "end", "regularization": 0.01},
        "val_ndcg@10": 0.1839,
        "val_hr@10": 0.3171,
        "best_epoch": 34,
        "seconds": 527.2,
        "load_avg": [0.75, 2.0],
    }
    lines = tune.render([old_mf, old_sasrec]).splitlines()
    assert lines[0] == (
        "| tag | factors | positions | val NDCG@10 | val HR@10 | best epoch | fit s | load |"
    )
    assert lines[2] == "| X1-pos-end | - | end | 0.1839 | 0.3171 | 34 | 527.2 | 0.75-2.0 |"
    assert lines[3] == "| g64a | 64 | - | 0.0334 | - | 8 | 14.31 | - |"


def test_tune_gives_hybrids_the_catalog_texts(tmp_path: Path) -> None:
    ratings = write_ratings_csv(tmp_path / "ratings.csv")
    catalog = tmp_path / "catalog.csv"
    rows = [f"{i},Film {i},{'Comedy' if i % 2 else 'Drama'}" for i in range(1, 26)]
    catalog.write_text("item_id,title,genres\n" + "\n".join(rows) + "\n")
    log = tmp_path / "tuning_mf-hybrid.jsonl"
    args = ["--model", "mf-hybrid", "--data", str(ratings), "--log", str(log)]
    args += ["--catalog", str(catalog), "--content-cache", str(tmp_path / "cache")]
    tune.main([*args, "--set", "content=add,init", "--set", "factors=4", "--set", "iterations=2"])
    rows_logged = tune.read_log(log)
    assert [r["config"]["content"] for r in rows_logged] == ["add", "init"]
    assert all(
        r["catalog"] == str(catalog) and r["config"]["content_dim"] == 384 for r in rows_logged
    )
