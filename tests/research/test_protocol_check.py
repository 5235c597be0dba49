"""research.protocol_check on tiny generated data: both protocols scored, its JSON written."""

from __future__ import annotations

import json
from pathlib import Path

from research import protocol_check
from research.common import load_validation
from tests.models.conftest import write_ratings_csv

FAST_MF = ["--set", "factors=4", "--set", "iterations=3", "--set", "unobserved_weight=0.1"]


def test_protocol_check_writes_both_protocols(tmp_path: Path) -> None:
    ratings = write_ratings_csv(tmp_path / "ratings.csv")
    args = ["--model", "mf", "--data", str(ratings), "--results", str(tmp_path), "--tag", "t"]
    protocol_check.main([*args, *FAST_MF])
    row = json.loads((tmp_path / "protocol_mf_t.json").read_text())
    assert row["overrides"] == {"factors": "4", "iterations": "3", "unobserved_weight": "0.1"}
    for key in ("shifted_val", "no_refit", "refit"):
        assert set(row[key]) == {"ndcg@10", "hr@10", "ndcg@20", "hr@20"}
    assert 1 <= row["best_epoch"] <= 3 and row["refit_seconds"] >= 0


def test_the_shifted_split_never_holds_the_real_test_items(tmp_path: Path) -> None:
    ratings = write_ratings_csv(tmp_path / "ratings.csv")
    shifted = protocol_check.load_shifted(ratings)
    validation = load_validation(ratings)
    assert shifted.test.tolist() == validation.val.tolist()
    assert (validation.test == -1).all()
