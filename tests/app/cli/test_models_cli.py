"""The model commands of the CLI: train, evaluate and compare on small generated data."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import pytest
from typer.testing import CliRunner

from app.cli import cli
from tests.models.conftest import write_ratings_csv

FAST_MF = {"factors": 8, "iterations": 4, "regularization": 0.01, "unobserved_weight": 0.1}
runner = CliRunner(env={"COLUMNS": "240"})  # wide enough that errors do not wrap


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


def test_cli_compare_on_a_cold_item_split_with_item_texts(tmp_path: Path) -> None:
    ratings = write_ratings_csv(tmp_path / "ratings.csv")
    genres = ["Comedy", "Drama", "Horror", "Sci-Fi", "Romance"]
    rows = [f"{i},Movie number {i},{genres[i % 5]}" for i in range(1, 26)]
    catalog = tmp_path / "catalog.csv"
    catalog.write_text("item_id,title,genres\n" + "\n".join(rows) + "\n")
    out = tmp_path / "cold"
    args = ["compare", "--data", str(ratings), "--out", str(out), "--cold-items", "0.2"]
    args += ["--catalog", str(catalog), "--content-cache", str(tmp_path / "cache")]
    result = runner.invoke(cli, [*args, "--models", "popularity,content,mf-hybrid"])
    assert result.exit_code == 0, result.output
    assert "item texts: 25 of 25 items" in result.output and "Test: cold items" in result.output
    payload = json.loads((out / "compare.json").read_text())
    assert payload["content"]["catalog"] == "catalog.csv"
    assert all("test_cold" in row and "test_warm" in row for row in payload["rows"])
    assert list((tmp_path / "cache").glob("*.vectors.npy"))
    result = runner.invoke(
        cli, ["compare", "--data", str(ratings), "--out", str(out), "--models", "content"]
    )
    assert result.exit_code != 0 and "reads item content" in result.output


def _fake_quantize(monkeypatch: pytest.MonkeyPatch, calls: list[str]) -> None:
    """A models.quantize whose quantize_model records the precision and returns the model."""

    def quantize_model(model: object, precision: str) -> object:
        calls.append(precision)
        return model

    module = types.ModuleType("models.quantize")
    module.quantize_model = quantize_model  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "models.quantize", module)


def test_cli_compare_over_seeds_with_a_cap_and_a_derived_row(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    _fake_quantize(monkeypatch, calls)
    ratings, out = write_ratings_csv(tmp_path / "ratings.csv"), tmp_path / "cmp"
    args = ["compare", "--data", str(ratings), "--out", str(out), "--models", "popularity,mf"]
    args += ["--seeds", "0,1", "--max-seeds", "popularity=1", "--derive", "mf-int8"]
    args += [x for k, v in FAST_MF.items() for x in ("--set", f"mf.{k}={v}")]
    result = runner.invoke(cli, args)
    assert result.exit_code == 0, result.output
    rows = {row["model"]: row for row in json.loads((out / "compare.json").read_text())["rows"]}
    assert rows["popularity"]["seeds"] == [0] and rows["mf"]["seeds"] == [0, 1]
    assert rows["mf-int8"]["derived_from"] == "mf" and calls == ["int8", "int8"]
    assert "Fewer seeds than requested: popularity." in result.output
    assert (out / "checkpoints" / "mf" / "seed-1" / "weights.safetensors").is_file()


def test_cli_compare_refuses_bad_seed_options(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ratings = write_ratings_csv(tmp_path / "ratings.csv")
    base = ["compare", "--data", str(ratings), "--out", str(tmp_path / "c"), "--models", "mf"]
    for extra, message in (
        (["--seeds", "0,x"], "expected integers"),
        (["--max-seeds", "mf"], "expected MODEL=N"),
        (["--max-seeds", "ease=1"], "max seeds ease=1"),
        (["--derive", "mf-int4"], "ends in -int8 or -fp16"),
    ):
        result = runner.invoke(cli, base + extra)
        assert result.exit_code != 0 and message in result.output, result.output
    monkeypatch.setitem(sys.modules, "models.quantize", None)  # as if the module were missing
    result = runner.invoke(cli, [*base, "--derive", "mf-fp16"])
    assert result.exit_code != 0 and "needs models.quantize.quantize_model" in result.output


def test_train_refuses_fewer_than_one_process(tmp_path: Path) -> None:
    data = write_ratings_csv(tmp_path / "r.csv")
    out = tmp_path / "out"
    result = runner.invoke(
        cli,
        ["train", "--model", "sasrec", "--data", str(data), "--out", str(out), "--nproc", "0"],
    )
    assert result.exit_code == 2 and "--nproc" in result.output
    assert not out.exists()  # nothing was trained
