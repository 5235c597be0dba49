"""`recsys quantize`: an int8 checkpoint from a trained one, and clear refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from app.cli import cli
from tests.models.conftest import write_ratings_csv

runner = CliRunner(env={"COLUMNS": "240"})  # wide enough that errors do not wrap
FAST_MF = ["--set", "factors=8", "--set", "iterations=3"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(ratings file, checkpoint root with mf/ and popularity/) trained through the CLI."""
    root = tmp_path_factory.mktemp("quantize-cli")
    ratings = write_ratings_csv(root / "ratings.csv")
    for model, sets in (("mf", FAST_MF), ("popularity", [])):
        args = ["train", "--model", model, "--data", str(ratings), "--out", str(root / model)]
        result = runner.invoke(cli, args + sets)
        assert result.exit_code == 0, result.output
    return ratings, root


def quantize(*args: str) -> tuple[int, str]:
    """Run `recsys quantize` with `args`: (exit code, output)."""
    result = runner.invoke(cli, ["quantize", *args])
    return result.exit_code, result.output


def test_help_has_an_example() -> None:
    code, output = quantize("--help")
    assert code == 0 and "Example" in output


def test_quantize_with_metrics(trained: tuple[Path, Path], tmp_path: Path) -> None:
    ratings, root = trained
    out = tmp_path / "mf-int8"
    code, output = quantize(
        "--checkpoint", str(root / "mf"), "--precision", "int8", "--out", str(out),
        "--data", str(ratings),
    )  # fmt: skip
    assert code == 0, output
    assert "int8 checkpoint" in output
    meta = json.loads((out / "meta.json").read_text())
    assert meta["model"] == "mf-int8" and set(meta["metrics"]) == {"val", "test"}
    code, output = quantize(
        "--checkpoint", str(out), "--precision", "fp16", "--out", str(tmp_path / "again")
    )
    assert code == 2 and "already quantized (int8)" in output


@pytest.mark.parametrize(
    ("model", "precision", "message"),
    [
        ("mf", "int4", "'int4'; choose one of int8, fp16"),
        ("popularity", "int8", "popularity cannot be quantized"),
        ("missing", "int8", "no such checkpoint directory"),
    ],
)
def test_refusals(
    trained: tuple[Path, Path], tmp_path: Path, model: str, precision: str, message: str
) -> None:
    args = ["--precision", precision, "--out", str(tmp_path / "q")]
    code, output = quantize("--checkpoint", str(trained[1] / model), *args)
    assert code == 2 and message in output
    assert not (tmp_path / "q").exists()


def test_refuses_an_existing_out(trained: tuple[Path, Path], tmp_path: Path) -> None:
    code, output = quantize(
        "--checkpoint", str(trained[1] / "mf"), "--precision", "int8", "--out", str(tmp_path)
    )
    assert code == 2 and "already exists" in output
