"""NeuMF: the fold-in against the learned users, a score that is not a dot product, and the
base contract's default score for the other models."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.base import Recommender, mask_items, rank_items
from models.neumf import NeuMF
from models.zoo import build_model
from tests.models.conftest import NUM_ITEMS, checkerboard, random_loo

TINY = {
    "gmf_factors": 8,
    "mlp_factors": 8,
    "mlp_layers": "16,8",
    "lr": 0.03,
    "l2": 0.0,
    "batch_size": 8,
    "epochs": 60,
    "patience": 60,
}


@pytest.fixture(scope="module")
def trained() -> NeuMF:
    """NeuMF fitted on a small clustered leave-one-out train set."""
    data = random_loo(users=60, items=40)
    # The tiny data needs more fold-in steps than ml1m's default 10 (and recency off) to reach
    # the learned users' top 5: with the defaults the overlap fell below 0.7.
    overrides = {**TINY, "epochs": 40, "l2": 1e-3, "recency_boost": 0.0, "fold_steps": 30}
    model = build_model("neumf", data.num_items, overrides)
    model.fit(data.train)
    assert isinstance(model, NeuMF)
    return model


def _top(scores: torch.Tensor, histories: list[np.ndarray], k: int) -> list[set[int]]:
    """Each row's top-k unseen items."""
    masked = scores.clone()
    mask_items(masked, histories)
    return [set(row) for row in torch.topk(masked, k, dim=1).indices.tolist()]


def test_fold_in_reproduces_the_learned_users_rankings(trained: NeuMF) -> None:
    histories = random_loo(users=60, items=40).train
    assert trained.learned_users is not None
    learned = _top(trained.score_vectors(trained.learned_users), histories, 5)
    folded = _top(trained.score(histories), histories, 5)
    overlap = np.mean([len(a & b) / 5 for a, b in zip(learned, folded, strict=True)])
    assert overlap >= 0.7


def test_fold_in_is_deterministic_and_independent_of_the_batch(trained: NeuMF) -> None:
    histories = random_loo(users=60, items=40).train
    alone = trained.user_vectors(histories[:1])
    torch.testing.assert_close(trained.user_vectors(histories)[:1], alone, rtol=1e-4, atol=1e-5)
    assert torch.equal(trained.user_vectors(histories[:1]), alone)


def test_the_score_is_not_a_dot_product(trained: NeuMF) -> None:
    histories = random_loo(users=60, items=40).train[:4]
    users = trained.user_vectors(histories)
    scores = trained.score(histories)
    torch.testing.assert_close(scores, trained.score_vectors(users))
    assert not torch.allclose(scores, users @ trained.item_vectors().T, atol=1e-3)
    # No item matrix gives these scores by a product: with the items fixed they are not
    # linear in the user vector.
    doubled = trained.score_vectors(2 * users) - trained.score_vectors(torch.zeros_like(users))
    assert not torch.allclose(doubled, 2 * (scores - trained.score_vectors(0 * users)), atol=1e-3)


def test_gmf_only_is_a_learned_dot_product() -> None:
    histories, withheld = checkerboard()
    model = build_model("neumf", NUM_ITEMS, {**TINY, "mlp": False})
    model.fit(histories)
    users = model.user_vectors(histories)
    params = model.state_tensors()
    weight, bias = params["out.weight"][0], params["out.bias"][0]
    want = (users * weight) @ params["gmf_item"].T + bias
    torch.testing.assert_close(model.score(histories), want)
    assert model.item_vectors().shape == (NUM_ITEMS, 8)
    scores = model.score(histories).clone()
    mask_items(scores, histories)
    np.testing.assert_array_equal(scores.argmax(dim=1).numpy(), withheld)


def test_bce_with_sampled_negatives_learns_the_checkerboard() -> None:
    histories, withheld = checkerboard()
    model = build_model("neumf", NUM_ITEMS, {**TINY, "loss": "bce", "negatives": 4})
    model.fit(histories)
    scores = model.score(histories).clone()
    mask_items(scores, histories)
    assert (scores.argmax(dim=1).numpy() == withheld).mean() >= 0.9


@pytest.mark.parametrize("name", ["mf", "ease", "popularity"])
def test_the_base_default_is_the_dot_product(name: str) -> None:
    histories, _ = checkerboard()
    model = build_model(name, NUM_ITEMS, {"iterations": 3} if name == "mf" else {})
    model.fit(histories)
    assert type(model).score_vectors is Recommender.score_vectors
    users, items = model.user_vectors(histories), model.item_vectors()
    assert torch.equal(model.score(histories), users @ items.T)
    blocked = [np.asarray(h) for h in histories]
    for got, want in zip(
        model.recommend(histories, k=5), rank_items(items, users, blocked, k=5), strict=True
    ):
        assert torch.equal(got, want)


def test_config_refuses_an_unknown_loss_and_an_empty_tower() -> None:
    with pytest.raises(ValueError, match="loss must be"):
        build_model("neumf", NUM_ITEMS, {"loss": "hinge"})
    with pytest.raises(ValueError, match="mlp=True needs"):
        build_model("neumf", NUM_ITEMS, {"mlp_layers": ""})
