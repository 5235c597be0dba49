"""research.sweep on tiny generated data, in this process (`--jobs 1`)."""

from __future__ import annotations

import json
from pathlib import Path

from research import sweep
from tests.models.conftest import write_ratings_csv


def test_sweep_appends_a_row_per_run_and_keeps_failures(tmp_path: Path) -> None:
    ratings = write_ratings_csv(tmp_path / "ratings.csv")
    grid = [
        {"name": "small", "set": {"factors": 4}},
        {"name": "wider", "set": {"factors": 6}, "seed": 1},
        {"name": "broken", "set": {"no_such_field": 1}},
    ]
    (tmp_path / "grid.json").write_text(json.dumps(grid))
    out = tmp_path / "runs.jsonl"
    args = ["--model", "mf", "--data", str(ratings), "--grid", str(tmp_path / "grid.json")]
    sweep.main([*args, "--jobs", "1", "--out", str(out), "--set", "iterations=2"])
    rows = {r["name"]: r for r in map(json.loads, out.read_text().splitlines())}
    assert rows["wider"]["overrides"] == {"iterations": "2", "factors": 6}
    assert rows["wider"]["seed"] == 1 and "refit" in rows["small"]
    assert "unknown IALSConfig fields" in rows["broken"]["error"]
    assert "| small |" in sweep.table(list(rows.values()))
