"""int8/fp16 quantization: agreement with the float model, round trip, size, refusals."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from models.base import Recommender
from models.checkpoint import (
    META,
    CheckpointError,
    checkpoint_bytes,
    load_checkpoint,
    save_checkpoint,
)
from models.mf import IALSConfig, ImplicitALS
from models.popularity import Popularity
from models.quantize import (
    SCALE_SUFFIX,
    QuantizedRecommender,
    QuantizeError,
    dequantize,
    int8_rows,
    quantize_checkpoint,
    quantize_model,
    save_quantized,
)
from models.sasrec import SASRec, SASRecConfig
from tests.models.conftest import NUM_ITEMS, checkerboard

SASREC = SASRecConfig(
    max_len=8, hidden=16, blocks=1, dropout=0.0, lr=1e-2, batch_size=8, epochs=15,
    patience=15, progress=False, seed=3,
)  # fmt: skip
_TRAINED: dict[str, Recommender] = {}


def trained(name: str) -> Recommender:
    """mf or sasrec fitted once on the checkerboard (cached across tests)."""
    if name not in _TRAINED:
        model: Recommender
        if name == "mf":
            model = ImplicitALS(NUM_ITEMS, IALSConfig(factors=8, unobserved_weight=0.1))
        else:
            model = SASRec(NUM_ITEMS, SASREC)
        model.fit(checkerboard()[0])
        _TRAINED[name] = model
    return _TRAINED[name]


MODELS_AND_PRECISIONS = [(m, p) for m in ("mf", "sasrec") for p in ("int8", "fp16")]


def test_int8_rows_per_row_scale_bounds_the_error() -> None:
    weight = torch.randn(6, 10) * torch.tensor([0.01, 0.1, 1.0, 10.0, 0.0, 3.0])[:, None]
    quantized, scale = int8_rows(weight)
    assert quantized.dtype == torch.int8 and scale.shape == (6,)
    back = dequantize({"w": quantized, "w" + SCALE_SUFFIX: scale})["w"]
    assert torch.all((back - weight).abs() <= scale[:, None] / 2 + 1e-7)
    assert torch.all(back[4] == 0)  # an all-zero row survives


@pytest.mark.parametrize(("name", "precision"), MODELS_AND_PRECISIONS)
def test_quantized_keeps_the_checkerboard_ranking(name: str, precision: str) -> None:
    model = trained(name)
    histories, withheld = checkerboard()
    quantized = quantize_model(model, precision)
    assert quantized.name == f"{name}-{precision}"
    top, _ = quantized.recommend(histories, k=1)
    assert torch.equal(top[:, 0], torch.from_numpy(withheld))
    float_top, _ = model.recommend(histories, k=5)
    agreement = (quantized.recommend(histories, k=5)[0] == float_top).float().mean()
    assert agreement >= 0.9


@pytest.mark.parametrize("name", ["mf", "sasrec"])
def test_the_float_model_is_left_as_it_was(name: str) -> None:
    model = trained(name)
    before = {k: v.clone() for k, v in model.state_tensors().items()}
    quantize_model(model, "int8")
    assert all(torch.equal(before[k], v) for k, v in model.state_tensors().items())


def test_int8_compresses_the_linear_layers_and_item_matrix() -> None:
    packed = quantize_model(trained("sasrec"), "int8").state_tensors()
    int8 = {k for k, v in packed.items() if v.dtype == torch.int8}
    assert int8 == {
        "item_emb.weight",
        "blocks.0.attn.qkv.weight",
        "blocks.0.attn.proj.weight",
        "blocks.0.ffn.fc.weight",
        "blocks.0.ffn.proj.weight",
    }
    assert all(packed[k + SCALE_SUFFIX].shape == (packed[k].shape[0],) for k in int8)
    assert packed["pos_emb.weight"].dtype == torch.float32


def _save_float(model: Recommender, directory: Path) -> Path:
    ids = [f"i{i}" for i in range(NUM_ITEMS)]
    return save_checkpoint(model, directory, item_ids=ids, metrics={"test": {"ndcg@10": 0.5}})


@pytest.mark.parametrize(("name", "precision"), MODELS_AND_PRECISIONS)
def test_checkpoint_round_trip(tmp_path: Path, name: str, precision: str) -> None:
    source = _save_float(trained(name), tmp_path / "float")
    out = quantize_checkpoint(source, precision, tmp_path / precision)
    loaded = load_checkpoint(out)
    meta = loaded.meta
    assert meta["model"] == f"{name}-{precision}" and meta["precision"] == precision
    assert meta["quantized"]["source_model"] == name
    assert meta["quantized"]["source_metrics"] == {"test": {"ndcg@10": 0.5}}
    assert "metrics" not in meta  # the float model's metrics are not the quantized one's
    assert isinstance(loaded.model, QuantizedRecommender)
    histories = checkerboard()[0]
    in_memory = quantize_model(trained(name), precision)
    assert torch.equal(loaded.model.score(histories), in_memory.score(histories))


@pytest.mark.parametrize("name", ["mf", "sasrec"])
def test_int8_files_are_smaller_than_fp16_and_float(tmp_path: Path, name: str) -> None:
    # Wide enough that the tensors, not meta.json's item ids, make up the files.
    wide: Recommender = (
        ImplicitALS(NUM_ITEMS, IALSConfig(factors=256))
        if name == "mf"
        else SASRec(NUM_ITEMS, SASRecConfig(hidden=128, max_len=8, progress=False))
    )
    source = _save_float(wide, tmp_path / "float")
    sizes = {
        p: checkpoint_bytes(quantize_checkpoint(source, p, tmp_path / p)) for p in ("int8", "fp16")
    }
    assert sizes["int8"] < sizes["fp16"] < checkpoint_bytes(source)


def test_metrics_of_the_quantized_model(tmp_path: Path) -> None:
    source = _save_float(trained("mf"), tmp_path / "float")
    seen: list[Any] = []

    def metrics_of(model: Recommender, item_ids: Any) -> dict[str, Any]:
        seen.append((model.name, len(item_ids)))
        return {"test": {"ndcg@10": 0.25}}

    out = quantize_checkpoint(source, "int8", tmp_path / "q", metrics_of)
    assert seen == [("mf-int8", NUM_ITEMS)]
    assert load_checkpoint(out).meta["metrics"] == {"test": {"ndcg@10": 0.25}}


def test_refuses_unknown_precision() -> None:
    with pytest.raises(QuantizeError, match="unknown precision 'int4'"):
        quantize_model(trained("mf"), "int4")


def test_refuses_a_model_without_weights_to_compress() -> None:
    model = Popularity(NUM_ITEMS)
    model.fit(checkerboard()[0])
    with pytest.raises(QuantizeError, match="popularity cannot be quantized"):
        quantize_model(model, "int8")


def test_refuses_to_quantize_twice(tmp_path: Path) -> None:
    with pytest.raises(QuantizeError, match="already quantized"):
        quantize_model(quantize_model(trained("mf"), "int8"), "fp16")
    source = _save_float(trained("mf"), tmp_path / "float")
    once = quantize_checkpoint(source, "int8", tmp_path / "once")
    with pytest.raises(QuantizeError, match="already quantized"):
        quantize_checkpoint(once, "int8", tmp_path / "twice")


def test_quantized_model_is_not_trained() -> None:
    with pytest.raises(QuantizeError, match="not trained"):
        quantize_model(trained("mf"), "int8").fit(checkerboard()[0])


def test_a_tampered_quantized_checkpoint_is_refused(tmp_path: Path) -> None:
    source = _save_float(trained("mf"), tmp_path / "float")
    out = quantize_checkpoint(source, "int8", tmp_path / "q")
    meta = json.loads((out / META).read_text())
    meta["precision"] = "int3"
    (out / META).write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="unknown precision"):
        load_checkpoint(out)


def test_empty_history_still_served() -> None:
    quantized = quantize_model(trained("sasrec"), "int8")
    vectors = quantized.user_vectors([np.zeros(0, np.int64)])
    assert vectors.shape == (1, SASREC.hidden) and torch.isfinite(vectors).all()


def test_an_in_memory_quantized_model_saves_and_loads(tmp_path: Path) -> None:
    quantized = quantize_model(trained("sasrec"), "int8")
    ids = [f"i{i}" for i in range(NUM_ITEMS)]
    loaded = load_checkpoint(save_quantized(quantized, tmp_path / "q", ids))
    assert loaded.meta["quantized"]["source_model"] == "sasrec"
    assert "item_emb.weight" in loaded.meta["quantized"]["compressed"]
    histories = checkerboard()[0]
    assert torch.equal(loaded.model.score(histories), quantized.score(histories))
