"""train_model determinism and protocol, compare outputs, and the model CLI commands."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from app.cli import cli
from app.serving.registry import load_version
from models.checkpoint import CheckpointError, load_checkpoint
from models.compare import compare_models
from models.data import EvalSet, LeaveOneOut
from models.metrics import evaluate
from models.train import save_trained, train_model
from models.zoo import build_model, make_config
from tests.models.conftest import random_loo, write_ratings_csv

FAST_MF = {"factors": 8, "iterations": 4, "regularization": 0.01, "unobserved_weight": 0.1}


@pytest.mark.parametrize(("name", "overrides"), [("mf", FAST_MF), ("ease", {}), ("popularity", {})])
def test_training_is_deterministic(name: str, overrides: dict[str, object]) -> None:
    runs = [train_model(name, random_loo(), overrides, seed=3)[1] for _ in range(2)]
    for split in ("val", "test"):
        first, second = runs[0].to_json()[split], runs[1].to_json()[split]
        assert {k: round(v, 3) for k, v in first.items()} == {
            k: round(v, 3) for k, v in second.items()
        }


def test_report_and_refit_protocol(loo: LeaveOneOut, tmp_path: Path) -> None:
    model, report = train_model("mf", loo, FAST_MF, seed=0)
    assert report.config["iterations"] == report.fit["best_epoch"]  # refit uses the best epoch
    assert report.refit_seconds is not None and report.train_seconds > 0
    assert set(report.val) >= {"hr@10", "ndcg@10", "hr@20", "ndcg@20", "mrr", "coverage@10"}
    assert report.data["fingerprint"] == loo.fingerprint()
    save_trained(model, report, loo, tmp_path / "mf")
    meta = load_checkpoint(tmp_path / "mf").meta
    assert meta["metrics"]["test"] == pytest.approx(report.test)
    assert meta["data"]["users"] == loo.num_users and len(meta["user_ids"]) == loo.num_users
    assert meta["trained_on"] == "train+val"


TINY_SASREC = {"max_len": 10, "hidden": 16, "epochs": 3, "eval_every": 1, "progress": False}


@pytest.mark.parametrize("joined", [True, False])
def test_sasrec_refit_serves_both_networks_unless_told_not_to(
    loo: LeaveOneOut, tmp_path: Path, joined: bool
) -> None:
    overrides = {**TINY_SASREC, "ensemble_refit": joined}
    model, report = train_model("sasrec", loo, overrides, seed=0)
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
    model, report = train_model("sasrec", loo, overrides, seed=0)
    assert model.uses_times and report.config["members"] == 2
    test = loo.test_set()
    assert test.times is not None
    timed = evaluate(model, test)["ndcg@10"]
    assert timed == pytest.approx(report.test["ndcg@10"])  # the protocol scored with times
    untimed = evaluate(model, EvalSet(test.histories, test.targets))["ndcg@10"]
    assert untimed != pytest.approx(timed)  # without times every item gets the unknown bucket
    save_trained(model, report, loo, tmp_path / "sasrec")
    with pytest.raises(CheckpointError, match="serving does not pass"):
        load_version(tmp_path / "sasrec")


def test_no_refit_keeps_the_validated_model(loo: LeaveOneOut) -> None:
    _, report = train_model("mf", loo, FAST_MF, refit=False)
    assert report.refit_seconds is None and report.config["iterations"] == FAST_MF["iterations"]


def test_config_overrides_are_coerced_and_checked() -> None:
    from models.mf import IALSConfig

    config = make_config(IALSConfig, {"factors": "16", "unobserved_weight": "0.5"})
    assert config.factors == 16 and config.unobserved_weight == 0.5
    with pytest.raises(ValueError, match="unknown IALSConfig fields"):
        make_config(IALSConfig, {"factor": "16"})
    with pytest.raises(KeyError, match="unknown model"):
        build_model("nope", 10)


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
    again = compare_models(loo, ["popularity", "mf"], tmp_path, {"mf": FAST_MF}, reuse=True)
    assert all(r.reused for r in again) and again[1].test == pytest.approx(rows[1].test)


runner = CliRunner(env={"COLUMNS": "400"})  # no wrapping of long tmp paths in errors


@pytest.mark.parametrize("command", ["train", "evaluate", "compare"])
def test_help_has_an_example(command: str) -> None:
    result = runner.invoke(cli, [command, "--help"])
    assert result.exit_code == 0 and "Example" in result.output


def test_cli_train_evaluate_compare(tmp_path: Path) -> None:
    ratings = write_ratings_csv(tmp_path / "ratings.csv")
    out = tmp_path / "mf-v1"
    args = ["train", "--model", "mf", "--data", str(ratings), "--out", str(out), "--seed", "1"]
    sets = [x for k, v in FAST_MF.items() for x in ("--set", f"{k}={v}")]
    result = runner.invoke(cli, args + sets)
    assert result.exit_code == 0, result.output
    assert "test: hr@10" in result.output and (out / "weights.safetensors").is_file()
    result = runner.invoke(
        cli, ["evaluate", "--checkpoint", str(out), "--data", str(ratings), "--json"]
    )
    assert result.exit_code == 0, result.output
    assert set(json.loads(result.output)) == {"val", "test"}
    result = runner.invoke(
        cli,
        [
            "compare",
            "--data",
            str(ratings),
            "--out",
            str(tmp_path / "cmp"),
            "--models",
            "popularity,ease",
            "--set",
            "ease.regularization=5",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "| ease |" in result.output


def test_cli_reports_bad_input(tmp_path: Path) -> None:
    result = runner.invoke(
        cli,
        [
            "train",
            "--model",
            "mf",
            "--data",
            str(tmp_path / "none.csv"),
            "--out",
            str(tmp_path / "x"),
        ],
    )
    assert result.exit_code != 0 and "no dataset" in result.output
    ratings = write_ratings_csv(tmp_path / "ratings.csv")
    result = runner.invoke(
        cli,
        [
            "train",
            "--model",
            "mf",
            "--data",
            str(ratings),
            "--out",
            str(tmp_path / "x"),
            "--set",
            "nonsense=1",
        ],
    )
    assert result.exit_code != 0 and "unknown IALSConfig fields" in result.output
    result = runner.invoke(
        cli, ["evaluate", "--checkpoint", str(tmp_path / "missing"), "--data", str(ratings)]
    )
    assert result.exit_code != 0 and "no such checkpoint" in result.output
