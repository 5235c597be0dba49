"""research.probe_mf_solver on a tiny synthetic shop: both solvers train and score alike."""

from __future__ import annotations

from pathlib import Path

from models.synth import SynthConfig, write_shop
from research import probe_mf_solver


def test_exact_and_cg_fit_the_same_split(tmp_path: Path) -> None:
    write_shop(SynthConfig(items=300, users=400, events=8_000, seed=2), tmp_path)
    rows = probe_mf_solver.run(
        tmp_path / "events.csv", ["exact", "cg"], 200, {"factors": "8", "iterations": "4"}
    )
    assert [r["solver"] for r in rows] == ["exact", "cg"]
    assert rows[0]["users"] == rows[1]["users"] and rows[0]["val_users"] == 200
    assert abs(rows[0]["val_ndcg@10"] - rows[1]["val_ndcg@10"]) < 0.05
