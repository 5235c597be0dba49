"""The comparison over seeds: means, spreads, bootstrap intervals, per-seed checkpoints, and
rows derived from trained models."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from models.base import Recommender
from models.checkpoint import load_checkpoint
from models.compare import Derived, compare_models
from models.data import LeaveOneOut
from tests.models.conftest import random_loo

FAST_MF = {"factors": 8, "iterations": 4, "regularization": 0.01, "unobserved_weight": 0.1}
NAMES = ["popularity", "mf"]


def _compare(loo: LeaveOneOut, out: Path, **kw: Any) -> dict[str, Any]:
    """Compare popularity and mf over seeds 0 and 1 (fast: few resamples); compare.json."""
    kw.setdefault("seeds", [0, 1])
    compare_models(loo, NAMES, out, {"mf": FAST_MF}, resamples=500, **kw)
    return json.loads((out / "compare.json").read_text())


def _seed_test(out: Path, name: str, seed: int) -> dict[str, float]:
    """The test metrics saved in one seed's checkpoint."""
    return load_checkpoint(out / "checkpoints" / name / f"seed-{seed}").meta["metrics"]["test"]


def test_rows_hold_the_seed_means_their_spread_and_intervals(tmp_path: Path) -> None:
    loo = random_loo()
    payload = _compare(loo, tmp_path)
    assert payload["seeds"] == [0, 1]
    popularity, mf = payload["rows"]
    runs = [_seed_test(tmp_path, "mf", seed) for seed in (0, 1)]
    assert runs[0]["ndcg@10"] != runs[1]["ndcg@10"]  # the seeds trained different models
    for metric, mean in mf["test"].items():
        assert isinstance(mean, float)  # plain numbers, as readers of one seed expect
        assert mean == pytest.approx((runs[0][metric] + runs[1][metric]) / 2)
        assert mf["test_std"][metric] == pytest.approx(
            abs(runs[0][metric] - runs[1][metric]) / 2**0.5
        )
    assert mf["seeds"] == [0, 1] and set(mf["val_std"]) == set(mf["val"])
    assert set(mf["test_ci95"]) == {"hr@10", "ndcg@10", "hr@20", "ndcg@20", "mrr"}
    for row in (popularity, mf):
        low, high = row["test_ci95"]["ndcg@10"]
        assert low < row["test"]["ndcg@10"] < high
    assert mf["vs_best"] == {
        "best": "mf",
        "metric": "ndcg@10",
        "diff": 0.0,
        "low": 0.0,
        "high": 0.0,
    }
    gap = popularity["vs_best"]
    assert gap["diff"] == pytest.approx(popularity["test"]["ndcg@10"] - mf["test"]["ndcg@10"])
    assert gap["low"] < gap["diff"] < gap["high"] < 0  # mf is clearly better on this data


def test_per_user_arrays_recompute_the_means(tmp_path: Path) -> None:
    loo = random_loo()
    payload = _compare(loo, tmp_path)
    arrays = np.load(tmp_path / "per_user_ndcg10.npz")
    assert sorted(arrays.files) == sorted(NAMES)
    for row in payload["rows"]:
        values = arrays[row["model"]]
        assert values.shape == (loo.num_users,)
        assert values.mean() == pytest.approx(row["test"]["ndcg@10"])


def test_markdown_shows_spreads_the_difference_to_the_best_and_the_seeds(tmp_path: Path) -> None:
    _compare(random_loo(), tmp_path, max_seeds={"popularity": 1})
    text = (tmp_path / "compare.md").read_text()
    assert "| ndcg@10 (mean ± std) |" in text and "| Δ ndcg@10 vs best [95% CI] |" in text
    [mf_line] = [line for line in text.splitlines() if line.startswith("| mf |") and "±" in line]
    assert "| best |" in mf_line
    [pop_line] = [line for line in text.splitlines() if line.startswith("| popularity |")][:1]
    assert " [-0." in pop_line and "±" not in pop_line  # one seed: no spread
    assert "Seeds per row: popularity 0; mf 0,1. Fewer seeds than requested: popularity." in text
    assert "paired bootstrap" in text and "includes 0" in text
    assert (tmp_path / "ndcg_vs_best.png").is_file()


def test_reuse_loads_each_seeds_checkpoint(tmp_path: Path) -> None:
    loo = random_loo()
    first = _compare(loo, tmp_path)
    seed0 = tmp_path / "checkpoints" / "mf" / "seed-0" / "meta.json"
    written = seed0.read_text()
    again = _compare(loo, tmp_path, reuse=True)
    assert all(row["reused"] for row in again["rows"])
    assert again["rows"][1]["test"] == pytest.approx(first["rows"][1]["test"])
    more = _compare(loo, tmp_path, reuse=True, seeds=[0, 2])
    assert not more["rows"][1]["reused"] and seed0.read_text() == written  # seed 0 reused
    assert (tmp_path / "checkpoints" / "mf" / "seed-2" / "meta.json").is_file()
    other = random_loo(seed=1)  # other data: nothing is reused
    assert not any(row["reused"] for row in _compare(other, tmp_path, reuse=True)["rows"])


def test_a_derived_row_transforms_every_seeds_trained_model(tmp_path: Path) -> None:
    seen: list[Recommender] = []

    def identity(model: Recommender) -> Recommender:
        seen.append(model)
        return model

    payload = _compare(random_loo(), tmp_path, derived={"mf-same": Derived("mf", identity)})
    assert len(seen) == 2 and seen[0] is not seen[1]
    rows = {row["model"]: row for row in payload["rows"]}
    assert [row["model"] for row in payload["rows"]] == ["popularity", "mf", "mf-same"]
    same, mf = rows["mf-same"], rows["mf"]
    assert same["derived_from"] == "mf" and mf["derived_from"] is None
    assert same["val"] == {} and same["refit_seconds"] is None and same["seeds"] == [0, 1]
    assert same["test"] == pytest.approx(mf["test"]) and same["vs_best"]["diff"] == 0.0
    meta = load_checkpoint(tmp_path / "checkpoints" / "mf-same" / "seed-1").meta
    assert meta["derived_from"] == "mf" and meta["seed"] == 1
    assert "| mf-same |" in (tmp_path / "compare.md").read_text()


def test_bad_requests_are_refused(tmp_path: Path) -> None:
    loo = random_loo()
    with pytest.raises(ValueError, match="base 'sasrec'"):
        _compare(loo, tmp_path, derived={"sasrec-int8": Derived("sasrec", lambda m: m)})
    with pytest.raises(ValueError, match="max seeds ease=1"):
        _compare(loo, tmp_path, max_seeds={"ease": 1})
    with pytest.raises(ValueError, match="distinct"):
        _compare(loo, tmp_path, seeds=[1, 1])
