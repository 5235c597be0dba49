"""research.encoder_cost on a tiny catalog: the cost JSON written with every field."""

from __future__ import annotations

import json
from pathlib import Path

from research import encoder_cost


def test_distinct_texts_repeat_with_a_suffix() -> None:
    assert encoder_cost.distinct_texts(["a", "b"], 5) == ["a", "b", "a (1)", "b (1)", "a (2)"]


def test_encoder_cost_writes_its_json(tmp_path: Path) -> None:
    catalog = tmp_path / "catalog.csv"
    catalog.write_text("item_id,title\n1,Heat\n2,Toy Story\n")
    out = tmp_path / "cost.json"
    encoder_cost.main(["--items", "6", "--catalog", str(catalog), "--out", str(out)])
    row = json.loads(out.read_text())
    assert row["items"] == 6 and row["dim"] == 384 and row["threads"] == 1
    assert row["encode_seconds_per_10k"] > 0 and row["package_disk_mb"] > 50
