"""Checkpoints: round trip, atomic writes, and refusal of corrupt or mismatched directories."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import safetensors.torch
import torch

from models.checkpoint import (
    META,
    WEIGHTS,
    CheckpointError,
    _sha256_file,
    load_checkpoint,
    read_meta,
    save_checkpoint,
)
from models.mf import IALSConfig, ImplicitALS
from tests.models.conftest import NUM_ITEMS, checkerboard


@pytest.fixture
def saved(tmp_path: Path) -> Path:
    """A small trained MF checkpoint."""
    model = ImplicitALS(NUM_ITEMS, IALSConfig(factors=4, iterations=2))
    model.fit(checkerboard()[0])
    return save_checkpoint(
        model,
        tmp_path / "v1",
        item_ids=[f"i{i}" for i in range(NUM_ITEMS)],
        metrics={"val": {"ndcg@10": 0.5}},
        train_seconds=1.5,
    )


def _edit_meta(directory: Path, **changes: Any) -> None:
    meta = json.loads((directory / META).read_text())
    meta.update(changes)
    (directory / META).write_text(json.dumps(meta))


def test_meta_records_provenance(saved: Path) -> None:
    meta = read_meta(saved)
    assert meta["model"] == "mf" and meta["config"]["factors"] == 4
    assert meta["metrics"]["val"]["ndcg@10"] == 0.5 and meta["train_seconds"] == 1.5
    assert {"torch", "numpy", "python"} <= set(meta["versions"])
    assert meta["tensors"] == {"item_factors": [NUM_ITEMS, 4]} and meta["created_at"]
    assert sorted(p.name for p in saved.iterdir()) == [META, WEIGHTS]


def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_checkpoint(tmp_path / "nope")


@pytest.mark.parametrize("name", [META, WEIGHTS])
def test_missing_file(saved: Path, name: str) -> None:
    (saved / name).unlink()
    with pytest.raises(CheckpointError, match=f"missing {name}"):
        load_checkpoint(saved)


def test_bad_json(saved: Path) -> None:
    (saved / META).write_text("{not json")
    with pytest.raises(CheckpointError, match="unreadable JSON"):
        load_checkpoint(saved)


def test_missing_meta_fields(saved: Path) -> None:
    (saved / META).write_text(json.dumps({"model": "mf"}))
    with pytest.raises(CheckpointError, match="missing fields"):
        load_checkpoint(saved)


def test_unknown_model_name(saved: Path) -> None:
    _edit_meta(saved, model="transformer-xxl")
    with pytest.raises(CheckpointError, match="unknown or unavailable model 'transformer-xxl'"):
        load_checkpoint(saved)


def test_future_format_version(saved: Path) -> None:
    _edit_meta(saved, format_version=99)
    with pytest.raises(CheckpointError, match="format_version 99"):
        load_checkpoint(saved)


def test_shape_mismatch_with_config(saved: Path) -> None:
    meta = json.loads((saved / META).read_text())
    _edit_meta(saved, config={**meta["config"], "factors": 8})
    with pytest.raises(CheckpointError, match=r"do not fit the mf model \(item_factors has shape"):
        load_checkpoint(saved)


def test_item_count_mismatch(saved: Path) -> None:
    meta = json.loads((saved / META).read_text())
    _edit_meta(saved, item_ids=meta["item_ids"][:-1])
    with pytest.raises(CheckpointError, match="item"):
        load_checkpoint(saved)


def test_duplicate_item_ids(saved: Path) -> None:
    meta = json.loads((saved / META).read_text())
    _edit_meta(saved, item_ids=["same"] * len(meta["item_ids"]))
    with pytest.raises(CheckpointError, match="bad item_ids"):
        load_checkpoint(saved)


def test_truncated_weights_fail_the_hash(saved: Path) -> None:
    data = (saved / WEIGHTS).read_bytes()
    (saved / WEIGHTS).write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="sha256 differs"):
        load_checkpoint(saved)


def test_truncated_weights_with_matching_hash_are_unreadable(saved: Path) -> None:
    data = (saved / WEIGHTS).read_bytes()
    (saved / WEIGHTS).write_bytes(data[: len(data) // 2])
    _edit_meta(saved, weights_sha256=_sha256_file(saved / WEIGHTS))
    with pytest.raises(CheckpointError, match="unreadable safetensors"):
        load_checkpoint(saved)


def test_replaced_tensor_names(saved: Path) -> None:
    safetensors.torch.save_file({"other": torch.zeros(NUM_ITEMS, 4)}, str(saved / WEIGHTS))
    _edit_meta(saved, weights_sha256=_sha256_file(saved / WEIGHTS))
    with pytest.raises(CheckpointError, match=r"differ from meta\.json"):
        load_checkpoint(saved)


def test_existing_directory_is_not_overwritten_by_default(saved: Path) -> None:
    model = load_checkpoint(saved).model
    with pytest.raises(CheckpointError, match="already exists"):
        save_checkpoint(model, saved)
    save_checkpoint(model, saved, overwrite=True)
    assert load_checkpoint(saved).meta["model"] == "mf"
    assert [p.name for p in saved.parent.iterdir()] == ["v1"]  # no temp or retired dirs left


def test_crash_while_writing_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = ImplicitALS(NUM_ITEMS, IALSConfig(factors=4))

    def explode(*args: Any, **kwargs: Any) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(safetensors.torch, "save_file", explode)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(model, tmp_path / "v2")
    assert list(tmp_path.iterdir()) == []


def test_wrong_number_of_item_ids_is_refused_on_save(tmp_path: Path) -> None:
    model = ImplicitALS(NUM_ITEMS, IALSConfig(factors=4))
    with pytest.raises(CheckpointError, match="item ids"):
        save_checkpoint(model, tmp_path / "v3", item_ids=["a", "b"])
