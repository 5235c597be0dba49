"""The filter index and shaped ranking: exact against brute force, cached, canonical."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch

from app.serving.filters import FilterIndex, ItemFilter, value_key
from app.serving.merchandise import Shape, best
from app.serving.registry import LoadedModel
from app.serving.rules import Boost, Merchandising
from app.serving.state import UserState

ITEMS = 300
KINDS = ("shoes/running", "shoes/trail", "bags")


def catalog_rows() -> list[dict[str, Any]]:
    """item-n: kind n % 3, brand by n % 4, price n, every 7th inactive."""
    return [
        {
            "item_id": f"item-{n}",
            "categories": [KINDS[n % 3]],
            "attributes": {"brand": ["acme", "zeta", "Acme", "other"][n % 4], "size": n % 5},
            "price": float(n),
            "active": n % 7 != 0,
        }
        for n in range(ITEMS)
    ]


def loaded_model(seed: int = 0) -> LoadedModel:
    """A model over the catalog's items (one unknown to the catalog), random vectors."""
    item_ids = [f"item-{n}" for n in range(ITEMS)] + ["stranger"]
    vectors = torch.randn(len(item_ids), 8, generator=torch.Generator().manual_seed(seed))
    return LoadedModel(
        "mf", "v1", Path("."), None, item_ids, {i: n for n, i in enumerate(item_ids)}, vectors, {}
    )  # type: ignore[arg-type]


def test_values_and_categories_are_matched_canonically() -> None:
    assert value_key(True) == value_key("TRUE") == "true"
    assert value_key(280) == value_key(280.0) == value_key("280") == value_key(" 280.0 ")
    assert value_key("Acme") == value_key("acme") != value_key("acme2")
    same = ItemFilter.of(["Shoes/", "bags", "bags"], {"brand": ["b", "a"]})
    assert same == ItemFilter.of(["bags", "shoes"], {"brand": ["a", "B"]})
    assert ItemFilter.of([], {}) is None


def test_the_index_matches_and_caches_by_generation() -> None:
    index = FilterIndex()
    index.apply(catalog_rows())
    model = loaded_model()
    space = (model.cache_field, len(model.item_ids))
    shoes = ItemFilter.of(["shoes"], {"brand": ["acme"]}, price_min=10, price_max=100)
    assert shoes is not None
    mask = index.mask(space, model.item_ids, shoes)
    expected = [
        n <= ITEMS - 1 and n % 3 in (0, 1) and n % 4 in (0, 2) and 10 <= n <= 100 and n % 7
        for n in range(ITEMS + 1)
    ]
    assert mask.tolist() == [bool(e) for e in expected]
    assert index.mask(space, model.item_ids, shoes) is mask  # a repeated filter: a lookup
    index.apply([{**catalog_rows()[12], "categories": ["bags"]}])  # item-12 leaves shoes
    again = index.mask(space, model.item_ids, shoes)
    assert again is not mask and not again[12] and mask[12]


def brute_force(
    model: LoadedModel, state: UserState, allowed: np.ndarray, bias: np.ndarray, k: int
) -> list[str]:
    """Score every item, add the boosts, drop seen and refused items, sort."""
    scores = (model.item_vectors @ torch.from_numpy(state.vector)).numpy().astype(np.float64)
    scores += bias
    keep = allowed.copy()
    keep[state.seen] = False
    order = [n for n in np.argsort(-scores, kind="stable") if keep[n]]
    return [model.item_ids[n] for n in order[:k]]


@pytest.mark.parametrize("limit", [4, 40, 1000])
@pytest.mark.parametrize("boosted", [False, True])
def test_shaped_lists_are_exact(limit: int, boosted: bool) -> None:
    index = FilterIndex()
    index.apply(catalog_rows())
    model = loaded_model()
    rng = np.random.default_rng(limit)
    acme, bags = ItemFilter.of([], {"brand": ["acme"]}), ItemFilter.of(["bags"])
    assert acme is not None and bags is not None
    boosts = (Boost(acme, math.log(3.0)), Boost(bags, math.log(0.2))) if boosted else ()
    rules = Merchandising(boosts, (), 1)
    services = SimpleNamespace(filters=index, rules=rules)
    for trial in range(30):
        item_filter = [None, ItemFilter.of(["shoes"]), ItemFilter.of([], {"size": [1, 2]})][
            trial % 3
        ]
        vector = rng.standard_normal(8).astype(np.float32)
        seen = rng.choice(ITEMS, size=10, replace=False).astype(np.int32)
        scores = (model.item_vectors @ torch.from_numpy(vector)).numpy()
        scores[seen] = -np.inf
        ranked = np.argsort(-scores, kind="stable")[: min(limit, ITEMS + 1 - len(seen))]
        state = UserState(
            vector=vector,
            seen=seen,
            ranked=ranked.astype(np.int32),
            ranked_scores=scores[ranked].astype(np.float32),
            limit=limit,
            ranked_over=len(model.item_ids),
        )
        shape = Shape(model, services, item_filter, rules)  # type: ignore[arg-type]
        allowed = shape.allowed()
        allowed = np.ones(len(model.item_ids), bool) if allowed is None else allowed
        bias = np.zeros(len(model.item_ids)) if not boosted else shape.bias()[0]  # type: ignore[index]
        for k in (1, 5, 30):
            got = [item for item, _ in shape.top_k(state, [], frozenset(), k)]
            assert got == brute_force(model, state, allowed, bias, k), (trial, k)


def test_best_orders_ties_by_position() -> None:
    scores = np.array([1.0, 3.0, 3.0, -2.0, 0.5])
    assert best(scores, 2).tolist() == [1, 2]
    assert best(scores, 9).tolist() == [1, 2, 0, 4, 3]


def test_pinned_items_tie_their_neighbours_score() -> None:
    tied = Shape._tied([("p", None), ("a", 3.0), ("q", None), ("b", -1.0), ("r", None)])
    assert tied == [("p", 3.0), ("a", 3.0), ("q", 3.0), ("b", -1.0), ("r", -1.0)]
