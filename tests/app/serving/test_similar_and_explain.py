"""Similar items (model and content space) and explanations, on both backends."""

from __future__ import annotations

import httpx
import pytest

from app.config import Settings
from tests.app.serving_fixtures import post_history
from tests.conftest import running_app

GROUP = [f"sku-{n}" for n in range(10)]  # one of the generated shop's item groups, in order


@pytest.fixture
async def client(serving_settings: Settings) -> httpx.AsyncClient:  # type: ignore[override]
    """A client of an app that serves the tiny trained models."""
    async with running_app(serving_settings) as http:
        yield http  # type: ignore[misc]


async def refresh(client: httpx.AsyncClient) -> None:
    """What the background refresh does, now, and the content vectors it queued, encoded."""
    assert (await client.post("/models/reload")).status_code == 200
    await client.app.state.services.content.settled()  # type: ignore[attr-defined]


@pytest.mark.parametrize("model", ["mf", "sasrec"])
async def test_similar_items_by_the_model(client: httpx.AsyncClient, model: str) -> None:
    response = await client.get("/items/sku-3/similar", params={"k": 5, "model": model})
    body = response.json()
    assert response.status_code == 200, body
    assert (body["item_id"], body["model"], body["model_version"]) == ("sku-3", model, "v1")
    similar = [item["item_id"] for item in body["items"]]
    assert len(similar) == 5 and "sku-3" not in similar
    assert set(body["items"][0]) == {"item_id", "score"}
    scores = [item["score"] for item in body["items"]]
    assert scores == sorted(scores, reverse=True) and all(-1.0 <= s <= 1.0 for s in scores)


async def test_similar_items_follow_the_default_model_and_skip_inactive(
    client: httpx.AsyncClient,
) -> None:
    body = (await client.get("/items/sku-3/similar", params={"k": 3})).json()
    assert body["model"] == "sasrec"  # the default
    first = body["items"][0]["item_id"]
    await client.put("/items", json={"items": [{"item_id": first, "active": False}]})
    again = (await client.get("/items/sku-3/similar", params={"k": 3})).json()
    assert first not in [item["item_id"] for item in again["items"]]


async def test_similar_items_reject_what_is_unknown(client: httpx.AsyncClient) -> None:
    assert (await client.get("/items/nothing-here/similar")).status_code == 404
    assert (await client.get("/items/sku-1/similar", params={"model": "gpt"})).status_code == 404
    response = await client.get("/items/sku-1/similar", params={"k": 0})
    assert response.status_code == 422 and response.json()["detail"][0]["loc"] == ["query", "k"]


async def test_a_new_item_is_answered_in_content_space(client: httpx.AsyncClient) -> None:
    items = [
        {"item_id": "boot-1", "title": "Leather hiking boot", "categories": ["shoes/outdoor"]},
        {"item_id": "boot-2", "title": "Waterproof hiking boots", "categories": ["shoes/outdoor"]},
        {"item_id": "mug-1", "title": "Ceramic coffee mug", "categories": ["kitchen"]},
    ]
    assert (await client.put("/items", json={"items": items})).status_code == 200
    await refresh(client)
    response = await client.get("/items/boot-1/similar", params={"k": 2, "model": "mf"})
    body = response.json()
    assert response.status_code == 200, body
    assert body["model"] == "content" and body["model_version"]  # the encoder's name
    assert [item["item_id"] for item in body["items"]] == ["boot-2", "mug-1"]


async def test_explanations_name_history_items(client: httpx.AsyncClient) -> None:
    await post_history(client, "eve", GROUP[:5])
    for model in ("mf", "sasrec"):
        params = {"user_id": "eve", "k": 4, "model": model, "explain": "true"}
        body = (await client.get("/recommend", params=params)).json()
        assert all(1 <= len(item["because"]) <= 3 for item in body["items"]), body
        assert all(set(item["because"]) <= set(GROUP[:5]) for item in body["items"])
    plain = (await client.get("/recommend", params={"user_id": "eve", "model": "mf"})).json()
    assert "because" not in plain["items"][0]


async def test_fallback_items_explain_nothing_and_anonymous_sessions_explain(
    client: httpx.AsyncClient,
) -> None:
    params = {"user_id": "stranger", "k": 3, "explain": "true"}
    body = (await client.get("/recommend", params=params)).json()
    assert body["fallback"] == "unknown_user" and all(i["because"] == [] for i in body["items"])
    anonymous = {"user_id": "visitor", "k": 3, "history": GROUP[:3], "explain": True}
    body = (await client.post("/recommend", json=anonymous)).json()
    assert all(set(item["because"]) <= set(GROUP[:3]) and item["because"] for item in body["items"])


async def test_compare_shows_explanations(client: httpx.AsyncClient) -> None:
    await post_history(client, "fay", GROUP[:4])
    body = (await client.get("/compare", params={"user_id": "fay", "k": 3})).json()
    for entry in body["models"]:
        if entry["model"] != "popularity":
            assert all(item["because"] for item in entry["items"]), entry
