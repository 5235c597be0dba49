"""The hybrid models (mf-hybrid, sasrec-hybrid): items nobody trained on are their content part,
as new items are; the content switch is refused by ID-only models; checkpoints and refits."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from models.base import Recommender
from models.checkpoint import load_checkpoint, save_checkpoint
from models.data import LeaveOneOut
from models.sasrec import HybridSASRec
from models.train import train_model
from models.zoo import build_model
from tests.models.conftest import random_loo

FAST_MF = {"factors": 8, "iterations": 4, "regularization": 0.01, "unobserved_weight": 0.1}
TINY_SASREC = {"max_len": 10, "hidden": 16, "epochs": 3, "eval_every": 1, "progress": False}
HYBRIDS = [
    ("mf-hybrid", {**FAST_MF, "content": "add"}),
    ("mf-hybrid", {**FAST_MF, "content": "add", "content_fit": "factors"}),
    ("mf-hybrid", {**FAST_MF, "content": "init", "cold_scale": 2.0}),
    ("sasrec-hybrid", {**TINY_SASREC, "content": "add"}),
    ("sasrec-hybrid", {**TINY_SASREC, "content": "add", "id_dropout": 0.5, "cold_scale": 2.0}),
    ("sasrec-hybrid", {**TINY_SASREC, "content": "init"}),
]
UNSEEN = 7  # an item left out of every history below


def features_for(items: int, dim: int = 6, seed: int = 0) -> np.ndarray:
    """Random unit text vectors (I, dim)."""
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(items, dim)).astype(np.float32)
    return features / np.linalg.norm(features, axis=1, keepdims=True)


def without_item(data: LeaveOneOut, item: int) -> LeaveOneOut:
    """`data` with `item` out of every train history (a fit never trains on val)."""
    data.train = [h[h != item] for h in data.train]
    data.train_times = None
    return data


@pytest.mark.parametrize(("name", "overrides"), HYBRIDS)
def test_an_untrained_item_is_scored_from_its_content_as_a_new_item(
    name: str, overrides: dict[str, object]
) -> None:
    data = without_item(random_loo(), UNSEEN)
    features = features_for(data.num_items)
    model = build_model(name, data.num_items, overrides, features)
    model.fit(data.train, data.val_set())
    new = model.item_vectors_for(torch.from_numpy(features[[UNSEEN]]))
    assert new is not None
    torch.testing.assert_close(model.item_vectors()[[UNSEEN]], new, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(("name", "overrides"), HYBRIDS)
def test_hybrid_training_is_deterministic_and_round_trips(
    name: str, overrides: dict[str, object], tmp_path: Path
) -> None:
    data, features = random_loo(), features_for(40)
    runs = [train_model(name, data, overrides, seed=2, item_features=features) for _ in range(2)]
    histories = data.test_set().histories
    assert torch.equal(runs[0].model.score(histories), runs[1].model.score(histories))
    save_checkpoint(runs[0].model, tmp_path / "v1")
    loaded = load_checkpoint(tmp_path / "v1").model
    assert type(loaded) is type(runs[0].model) and loaded.reads_content
    assert torch.equal(loaded.score(histories), runs[0].model.score(histories))
    probe = torch.from_numpy(features_for(3, seed=5))
    assert torch.equal(_vectors_for(loaded, probe), _vectors_for(runs[0].model, probe))


def _vectors_for(model: Recommender, features: torch.Tensor) -> torch.Tensor:
    """`item_vectors_for`, asserted not None."""
    vectors = model.item_vectors_for(features)
    assert vectors is not None
    return vectors


def test_the_sasrec_hybrid_refit_is_joined_as_a_hybrid() -> None:
    data = random_loo()
    trained = train_model("sasrec-hybrid", data, TINY_SASREC, item_features=features_for(40))
    model = trained.model
    assert isinstance(model, HybridSASRec) and model.config.members == 2
    new = _vectors_for(model, torch.from_numpy(features_for(2, seed=9)))
    assert new.shape == (2, 2 * 16)  # both networks: hidden 16 each


def test_mf_hybrid_without_any_text_is_mf() -> None:
    data = random_loo()
    plain = train_model("mf", data, FAST_MF, seed=1).model
    blank = np.zeros((data.num_items, 6), dtype=np.float32)
    hybrid = train_model("mf-hybrid", data, FAST_MF, seed=1, item_features=blank).model
    histories = data.test_set().histories
    torch.testing.assert_close(hybrid.score(histories), plain.score(histories))


def test_sasrec_init_starts_the_id_embeddings_from_the_text_vectors() -> None:
    features = features_for(40)
    features[3] = 0.0  # no text: a random ID embedding as in SASRec
    model = build_model("sasrec-hybrid", 40, {**TINY_SASREC, "content": "init"}, features)
    assert isinstance(model, HybridSASRec)
    table = model.net.item_emb.weight[:40].detach()
    projection = model.net.content_proj
    assert projection is not None and not projection.weight.requires_grad
    from_text = projection(torch.from_numpy(features)).detach()
    has_text = np.arange(40) != 3
    torch.testing.assert_close(table[has_text], from_text[has_text])
    assert not torch.allclose(table[3], from_text[3])
    assert table[has_text].std().item() == pytest.approx(0.02, rel=0.05)


@pytest.mark.parametrize(("name", "hybrid"), [("mf", "mf-hybrid"), ("sasrec", "sasrec-hybrid")])
def test_id_only_models_refuse_the_content_switch(name: str, hybrid: str) -> None:
    with pytest.raises(ValueError, match=f"reads no item content; use {hybrid}"):
        build_model(name, 10, {"content": "add"})
    with pytest.raises(ValueError, match="content must be"):
        build_model(hybrid, 10, {"content": "both"}, features_for(10))
    assert build_model(name, 10, {}, features_for(10)).item_vectors_for(torch.ones(1, 6)) is None


def test_mf_explains_by_the_most_similar_history_items() -> None:
    data = random_loo()
    model = train_model("mf", data, FAST_MF, refit=False).model
    history = data.train[0]
    targets = model.item_vectors()[[0, 5]]
    items = np.unique(history)
    vectors = torch.nn.functional.normalize(model.item_vectors()[items], dim=1)
    for target, reasons in zip(targets, model.explain(history, targets, k=3), strict=True):
        cosine = vectors @ torch.nn.functional.normalize(target, dim=0)
        assert reasons == items[np.argsort(-cosine.numpy(), kind="stable")[:3]].tolist()


@pytest.mark.parametrize(
    ("name", "overrides"),
    [
        ("mf-hybrid", FAST_MF),
        ("mf-hybrid", {**FAST_MF, "content_fit": "factors"}),
        ("sasrec-hybrid", {**TINY_SASREC, "id_dropout": 0.3}),
    ],
)
def test_untrained_items_take_no_part_in_training(name: str, overrides: dict[str, object]) -> None:
    """An item nobody trained on is left out of the softmax (SASRec) or the unobserved term
    (iALS), as an item added after training would be: its vector changes nothing else."""
    data = without_item(random_loo(), UNSEEN)
    features = features_for(data.num_items)
    models = []
    for scale in (1.0, 4.0):
        model = build_model(name, data.num_items, {**overrides, "cold_scale": scale}, features)
        model.fit(data.train, data.val_set())
        models.append(model)
    one, four = (m.item_vectors() for m in models)
    warm = np.arange(data.num_items) != UNSEEN
    torch.testing.assert_close(four[warm], one[warm], rtol=0, atol=0)
    torch.testing.assert_close(four[UNSEEN], 4 * one[UNSEEN])
    histories = data.test_set().histories[:10]
    torch.testing.assert_close(models[0].user_vectors(histories), models[1].user_vectors(histories))


def test_the_inference_item_table_is_composed_once_and_follows_every_change() -> None:
    data = random_loo()
    model = build_model("sasrec-hybrid", 40, TINY_SASREC, features_for(40))
    assert isinstance(model, HybridSASRec)
    with torch.inference_mode():
        assert model.net.table() is model.net.table()  # cached between encodings
    before = model.item_vectors()
    model.fit(data.train, data.val_set())  # train mode, then a load of the best weights
    after = model.item_vectors()
    assert not torch.equal(after, before)
    with torch.no_grad():
        torch.testing.assert_close(after, model.net._compose()[:40])
    fresh = build_model("sasrec-hybrid", 40, TINY_SASREC, features_for(40))
    assert not torch.equal(fresh.item_vectors(), after)  # composes (and caches) its own table
    fresh.load_tensors(model.state_tensors())
    assert torch.equal(fresh.item_vectors(), after)
