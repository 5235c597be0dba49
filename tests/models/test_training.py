"""train_model determinism and protocol, saving, config overrides and compare outputs."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from models.checkpoint import load_checkpoint
from models.compare import compare_models
from models.data import EvalSet, LeaveOneOut
from models.metrics import evaluate
from models.train import save_trained, train_model
from models.zoo import build_model, make_config, parse_model_overrides, parse_overrides
from tests.models.conftest import random_loo

FAST_MF = {"factors": 8, "iterations": 4, "regularization": 0.01, "unobserved_weight": 0.1}


@pytest.mark.parametrize(("name", "overrides"), [("mf", FAST_MF), ("ease", {}), ("popularity", {})])
def test_training_is_deterministic(name: str, overrides: dict[str, object]) -> None:
    runs = [train_model(name, random_loo(), overrides, seed=3).report for _ in range(2)]
    for split in ("val", "test"):
        first, second = runs[0].to_json()[split], runs[1].to_json()[split]
        assert {k: round(v, 3) for k, v in first.items()} == {
            k: round(v, 3) for k, v in second.items()
        }


def test_report_and_refit_protocol(loo: LeaveOneOut, tmp_path: Path) -> None:
    trained = train_model("mf", loo, FAST_MF, seed=0)
    model, report = trained.model, trained.report
    assert report.config["iterations"] == report.fit["best_epoch"]  # refit uses the best epoch
    assert trained.fitted is not model and trained.fitted.config.iterations == FAST_MF["iterations"]
    assert report.val == evaluate(
        trained.fitted, loo.val_set(), item_popularity=loo.item_popularity()
    )
    assert report.refit_seconds is not None and report.train_seconds > 0
    assert set(report.val) >= {"hr@10", "ndcg@10", "hr@20", "ndcg@20", "mrr", "coverage@10"}
    assert report.data["fingerprint"] == loo.fingerprint()
    save_trained(model, report, loo, tmp_path / "mf")
    meta = load_checkpoint(tmp_path / "mf").meta
    assert meta["metrics"]["test"] == pytest.approx(report.test)
    assert meta["data"]["users"] == loo.num_users and "user_ids" not in meta
    assert meta["trained_on"] == "train+val"


TINY_SASREC = {"max_len": 10, "hidden": 16, "epochs": 3, "eval_every": 1, "progress": False}


@pytest.mark.parametrize("joined", [True, False])
def test_sasrec_refit_serves_both_networks_unless_told_not_to(
    loo: LeaveOneOut, tmp_path: Path, joined: bool
) -> None:
    overrides = {**TINY_SASREC, "ensemble_refit": joined}
    trained = train_model("sasrec", loo, overrides, seed=0)
    model, report = trained.model, trained.report
    assert trained.fitted.config.members == 1
    members = 2 if joined else 1
    assert report.config["members"] == members
    assert model.item_vectors().shape == (loo.num_items, 16 * members)
    save_trained(model, report, loo, tmp_path / "sasrec")
    loaded = load_checkpoint(tmp_path / "sasrec").model
    histories = loo.test_set().histories[:20]
    assert torch.equal(loaded.score(histories), model.score(histories))
    assert evaluate(loaded, loo.test_set())["ndcg@10"] == pytest.approx(report.test["ndcg@10"])


def test_time_gaps_train_and_score_with_the_split_times(loo: LeaveOneOut, tmp_path: Path) -> None:
    assert loo.train_times is not None
    overrides = {**TINY_SASREC, "time_gaps": True}
    trained = train_model("sasrec", loo, overrides, seed=0)
    model, report = trained.model, trained.report
    assert model.uses_times and report.config["members"] == 2
    test = loo.test_set()
    assert test.times is not None
    timed = evaluate(model, test)["ndcg@10"]
    assert timed == pytest.approx(report.test["ndcg@10"])  # the protocol scored with times
    untimed = evaluate(model, EvalSet(test.histories, test.targets))["ndcg@10"]
    assert untimed != pytest.approx(timed)  # without times every item gets the unknown bucket
    save_trained(model, report, loo, tmp_path / "sasrec")
    loaded = load_checkpoint(tmp_path / "sasrec").model
    assert loaded.uses_times and evaluate(loaded, test)["ndcg@10"] == pytest.approx(timed)


def test_no_refit_keeps_the_validated_model(loo: LeaveOneOut) -> None:
    trained = train_model("mf", loo, FAST_MF, refit=False)
    report = trained.report
    assert trained.model is trained.fitted
    assert report.refit_seconds is None and report.config["iterations"] == FAST_MF["iterations"]
    assert report.test == evaluate(
        trained.model, loo.test_set(), item_popularity=loo.item_popularity()
    )


def test_unknown_test_targets_are_only_validated(loo: LeaveOneOut, tmp_path: Path) -> None:
    unknown = dataclasses.replace(loo, test=np.full(loo.num_users, -1, dtype=np.int64))
    trained = train_model("mf", unknown, FAST_MF)
    assert trained.report.test == {} and trained.report.val["ndcg@10"] > 0
    assert trained.report.refit_seconds is not None  # refit on train + val all the same


def test_save_trained_takes_extra_meta(loo: LeaveOneOut, tmp_path: Path) -> None:
    trained = train_model("popularity", loo)
    meta = {"source": "retrain", "trained_on": "all events", "data": {"events": 7}}
    save_trained(trained.model, trained.report, loo, tmp_path / "pop", **meta)
    saved = load_checkpoint(tmp_path / "pop").meta
    assert {k: saved[k] for k in meta} == meta
    assert saved["metrics"]["val"] == pytest.approx(trained.report.val)


def test_config_overrides_are_coerced_and_checked() -> None:
    from models.mf import IALSConfig

    config = make_config(IALSConfig, {"factors": "16", "unobserved_weight": "0.5"})
    assert config.factors == 16 and config.unobserved_weight == 0.5
    with pytest.raises(ValueError, match="unknown IALSConfig fields"):
        make_config(IALSConfig, {"factor": "16"})
    with pytest.raises(KeyError, match="unknown model"):
        build_model("nope", 10)


def test_override_strings_are_parsed() -> None:
    assert parse_overrides(["factors=16", " lr = 0.1 ", "name=a=b"]) == {
        "factors": "16",
        "lr": "0.1",
        "name": "a=b",
    }
    assert parse_model_overrides(["mf.factors=8", "sasrec.lr=1e-3", "mf.seed=2"]) == {
        "mf": {"factors": "8", "seed": "2"},
        "sasrec": {"lr": "1e-3"},
    }
    for bad in ("factors", "=3"):
        with pytest.raises(ValueError, match=repr(bad)):
            parse_overrides([bad])
    with pytest.raises(ValueError, match="'factors=8'"):
        parse_model_overrides(["factors=8"])


def test_compare_writes_table_json_and_charts(loo: LeaveOneOut, tmp_path: Path) -> None:
    rows = compare_models(loo, ["popularity", "mf"], tmp_path, {"mf": FAST_MF})
    assert [r.model for r in rows] == ["popularity", "mf"]
    assert all(r.ms_per_user > 0 and r.checkpoint_bytes > 0 and r.parameters > 0 for r in rows)
    names = {p.name for p in tmp_path.iterdir()}
    assert {
        "compare.md",
        "compare.json",
        "accuracy_vs_train_time.png",
        "accuracy_vs_latency.png",
        "model_size.png",
        "checkpoints",
    } <= names
    assert "| mf |" in (tmp_path / "compare.md").read_text()
    dataset = json.loads((tmp_path / "compare.json").read_text())["dataset"]
    assert dataset["source"] == "random_loo"  # a name, never a path of this machine
    again = compare_models(loo, ["popularity", "mf"], tmp_path, {"mf": FAST_MF}, reuse=True)
    assert all(r.reused for r in again) and again[1].test == pytest.approx(rows[1].test)
