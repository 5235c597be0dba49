"""The Recommender contract on every zoo model (implicit's recommender_base_test style), and the
shared ranking function."""

from __future__ import annotations

import dataclasses
import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from models.base import Recommender, mask_items, rank_items, rank_scores
from models.checkpoint import load_checkpoint, save_checkpoint
from models.zoo import MODELS, build_model
from tests.models.conftest import NUM_ITEMS, checkerboard, checkerboard_features

# Small, fast configs for the tiny checkerboard data.
TEST_CONFIGS: dict[str, dict[str, Any]] = {
    "popularity": {},
    "ease": {"regularization": 10.0},
    "mf": {"factors": 8, "iterations": 10, "unobserved_weight": 0.1, "regularization": 0.01},
    "sasrec": {
        "max_len": 8,
        "hidden": 16,
        "blocks": 1,
        "heads": 1,
        "dropout": 0.0,
        "lr": 1e-2,
        "batch_size": 8,
        "epochs": 15,
        "patience": 15,
        "progress": False,
        "seed": 3,
    },
}
TEST_CONFIGS["neumf"] = {
    "gmf_factors": 8,
    "mlp_factors": 8,
    "mlp_layers": "16,8",
    "lr": 0.03,
    "l2": 0.0,
    "batch_size": 8,
    "epochs": 60,
    "patience": 60,
}
TEST_CONFIGS["mf-hybrid"] = TEST_CONFIGS["mf"]
TEST_CONFIGS["sasrec-hybrid"] = TEST_CONFIGS["sasrec"]
TEST_CONFIGS["gru4rec"] = {
    "hidden": 16,
    "dropout": 0.2,  # without it the GRU learns the 40 users' orders, not their blocks
    "lr": 1e-2,
    "batch_size": 8,
    "epochs": 30,
    "patience": 30,
    "progress": False,
    "seed": 3,
    "threads": 1,
}
# Models that rank by personal taste; popularity ranks everyone alike by design.
PERSONALISED = {
    *("ease", "mf", "sasrec", "content", "mf-hybrid", "sasrec-hybrid", "gru4rec", "neumf"),
}


def _available(name: str) -> bool:
    """False when the model's module cannot be imported yet (being written elsewhere)."""
    module = {"sasrec": "models.sasrec", "sasrec-hybrid": "models.sasrec"}.get(name)
    if module is None:
        return True
    try:
        return importlib.util.find_spec(module) is not None and bool(MODELS[name])
    except ImportError:
        return False


MODEL_NAMES = [
    pytest.param(n, marks=pytest.mark.skipif(not _available(n), reason=f"{n} not importable yet"))
    for n in MODELS
]
_TRAINED: dict[str, Recommender] = {}


@pytest.fixture(params=MODEL_NAMES)
def trained(request: pytest.FixtureRequest) -> Recommender:
    """Each zoo model fitted once on the checkerboard (cached across tests)."""
    name = request.param
    if name not in _TRAINED:
        histories, _ = checkerboard()
        features = checkerboard_features()  # ID-only models ignore them
        model = build_model(name, NUM_ITEMS, TEST_CONFIGS.get(name, {}), features)
        torch.manual_seed(0)
        model.fit(histories)
        _TRAINED[name] = model
    return _TRAINED[name]


def test_zoo_names_match_model_names() -> None:
    for name in MODELS:
        if _available(name):
            assert MODELS[name].name == name


def test_withheld_item_ranks_first(trained: Recommender) -> None:
    if trained.name not in PERSONALISED:
        pytest.skip("popularity ranks every user alike")
    histories, withheld = checkerboard()
    scores = trained.score(histories).clone()
    mask_items(scores, histories)
    np.testing.assert_array_equal(scores.argmax(dim=1).numpy(), withheld)


def test_shapes_and_dtypes(trained: Recommender) -> None:
    histories, _ = checkerboard()
    users = trained.user_vectors(histories[:3])
    items = trained.item_vectors()
    assert users.dtype == items.dtype == torch.float32
    assert users.shape[0] == 3 and items.shape == (NUM_ITEMS, users.shape[1])
    assert items.is_contiguous()
    torch.testing.assert_close(trained.score(histories[:3]), trained.score_vectors(users))
    if type(trained).score_vectors is Recommender.score_vectors:  # the default: a dot product
        torch.testing.assert_close(trained.score(histories[:3]), users @ items.T)
    assert trained.num_items == NUM_ITEMS


def test_recommend_excludes_history_and_exclude(trained: Recommender) -> None:
    histories, _ = checkerboard()
    exclude = [[0, 1], [2], []]
    ids, scores = trained.recommend(histories[:3], k=NUM_ITEMS, exclude=exclude)
    assert ids.shape == scores.shape == (3, NUM_ITEMS)
    for row in range(3):
        top = ids[row][torch.isfinite(scores[row])].tolist()
        assert not set(top) & (set(histories[row].tolist()) | set(exclude[row]))
        assert torch.all(scores[row][:-1] >= scores[row][1:])  # sorted best first


def test_empty_and_single_histories_give_finite_scores(trained: Recommender) -> None:
    scores = trained.score([np.array([], dtype=np.int64), np.array([3])])
    assert scores.shape == (2, NUM_ITEMS) and torch.isfinite(scores).all()


def test_checkpoint_round_trip_gives_identical_scores(trained: Recommender, tmp_path: Path) -> None:
    histories, _ = checkerboard()
    item_ids = [f"sku-{i}" for i in range(NUM_ITEMS)]
    save_checkpoint(trained, tmp_path / "v1", item_ids=item_ids)
    loaded = load_checkpoint(tmp_path / "v1")
    assert type(loaded.model) is type(trained)
    assert loaded.item_ids.ids == item_ids
    assert loaded.meta["model"] == trained.name
    torch.testing.assert_close(
        loaded.model.score(histories), trained.score(histories), rtol=0, atol=0
    )


def test_recommend_ranks_through_rank_items(trained: Recommender) -> None:
    histories, _ = checkerboard()
    exclude = [[0, 1], [2], []]
    blocked = [
        np.concatenate([h, e]).astype(np.int64) for h, e in zip(histories[:3], exclude, strict=True)
    ]
    want = rank_scores(trained.score_vectors(trained.user_vectors(histories[:3])), blocked, k=5)
    got = trained.recommend(histories[:3], k=5, exclude=exclude)
    for a, b in zip(got, want, strict=True):
        assert torch.equal(a, b)


def test_times_are_accepted_and_ignored_by_models_that_do_not_use_them(
    trained: Recommender,
) -> None:
    if trained.uses_times:
        pytest.skip("reads times (sasrec's time_gaps): tests/models/test_sasrec.py tests them")
    histories, _ = checkerboard()
    times = [np.arange(len(h), dtype=np.int64) * 3600 for h in histories]
    assert torch.equal(trained.score(histories, times), trained.score(histories))
    with_times = trained.recommend(histories[:3], k=4, times=times[:3])
    without = trained.recommend(histories[:3], k=4)
    assert all(torch.equal(a, b) for a, b in zip(with_times, without, strict=True))


def test_config_dict_holds_the_catalog_and_every_config_field(trained: Recommender) -> None:
    config = trained.config_dict()
    assert config["num_items"] == NUM_ITEMS
    assert set(config) == {"num_items", *(f.name for f in dataclasses.fields(trained.config))}


def test_from_state_refuses_tensors_that_are_not_the_models(trained: Recommender) -> None:
    tensors = trained.state_tensors()
    name = next(iter(tensors))
    with pytest.raises(ValueError, match=r"tensors not in the model: \['extra'\]"):
        type(trained).from_state(trained.config_dict(), {**tensors, "extra": torch.zeros(1)})
    with pytest.raises(ValueError, match=f"missing tensors: \\['{name}'\\]"):
        type(trained).from_state(
            trained.config_dict(), {k: v for k, v in tensors.items() if k != name}
        )
    wrong = {**tensors, name: torch.zeros(*tensors[name].shape, 2)}
    with pytest.raises(ValueError, match=f"{name} has shape"):
        type(trained).from_state(trained.config_dict(), wrong)


def test_from_state_ignores_unknown_config_fields(trained: Recommender) -> None:
    config = {**trained.config_dict(), "added_later": 1}
    restored = type(trained).from_state(config, trained.state_tensors())
    histories, _ = checkerboard()
    assert torch.equal(restored.score(histories), trained.score(histories))


def test_content_models_need_item_features_and_keep_them_in_their_state(
    trained: Recommender,
) -> None:
    if not trained.reads_content:
        assert trained.item_vectors_for(torch.ones(2, 8)) is None
        return
    with pytest.raises(ValueError, match="reads item content"):
        build_model(trained.name, NUM_ITEMS, TEST_CONFIGS.get(trained.name, {}))
    with pytest.raises(ValueError, match="item features of shape"):
        build_model(trained.name, NUM_ITEMS, {}, checkerboard_features()[:-1])
    assert any(t.shape == (NUM_ITEMS, 8) for t in trained.state_tensors().values())


def test_new_items_get_vectors_from_their_content(trained: Recommender) -> None:
    if not trained.reads_content:
        pytest.skip("an ID-only model has no vector for an item it never saw")
    features = torch.from_numpy(checkerboard_features(seed=1)[:3])
    vectors = trained.item_vectors_for(features)
    assert vectors is not None and vectors.dtype == torch.float32
    assert vectors.shape == (3, trained.item_vectors().shape[1]) and torch.isfinite(vectors).all()


def test_explain_returns_history_items_only(trained: Recommender) -> None:
    histories, _ = checkerboard()
    targets = trained.item_vectors()[:4]
    reasons = trained.explain(histories[0], targets, k=2)
    assert len(reasons) == 4
    assert all(len(r) <= 2 and set(r) <= set(histories[0].tolist()) for r in reasons)
    assert trained.explain(np.array([], dtype=np.int64), targets) == [[], [], [], []]


def test_rank_items_masks_blocked_items_and_caps_k() -> None:
    items = torch.tensor([[1.0], [3.0], [2.0], [0.5]])  # (4, 1)
    users = torch.tensor([[1.0], [-1.0]])  # (2, 1)
    ids, scores = rank_items(items, users, [np.array([1]), [0, 1, 2]], k=10)
    assert ids.shape == scores.shape == (2, 4)  # k capped at the catalog
    assert ids[0].tolist() == [2, 0, 3, 1] and scores[0, -1] == float("-inf")
    assert ids[1, 0] == 3 and torch.isinf(scores[1, 1:]).all()  # only item 3 left unblocked
    top, _ = rank_items(items, users, [[], []], k=2)
    assert top.tolist() == [[1, 2], [3, 0]]
