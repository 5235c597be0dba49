"""Day one: no checkpoint yet. /recommend answers from the stored events' popular items (none
before any event), the popular list follows RECSYS_REFRESH_INTERVAL_S, the rest stays JSON."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx

from app.config import Settings
from app.serving.catalog import POPULAR_DUTY, Catalog
from tests.app.serving_fixtures import post_history
from tests.conftest import running_app


def day_one(settings: Settings, refresh_interval_s: float = 3600) -> Settings:
    """The parametrised deployment with no model at all (an empty model directory)."""
    settings.refresh_interval_s = refresh_interval_s
    settings.encode_catalog = False  # no text encoder to load: nothing here reads content
    return settings


async def until_popular(client: httpx.AsyncClient, timeout_s: float = 10) -> dict[str, Any]:
    """GET /recommend for a new user until the popular list has items (or the time is up)."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        body: dict[str, Any] = (await client.get("/recommend", params={"user_id": "new"})).json()
        if body["items"] or asyncio.get_running_loop().time() > deadline:
            return body
        await asyncio.sleep(0.1)


async def test_no_events_no_model_is_an_empty_list(settings: Settings) -> None:
    async with running_app(day_one(settings)) as client:
        for response in (
            await client.get("/recommend", params={"user_id": "u1", "k": 5}),
            await client.post("/recommend", json={"user_id": "u1", "k": 5, "history": ["x"]}),
        ):
            assert response.status_code == 200, response.text
            body = response.json()
            assert (body["model"], body["model_version"], body["fallback"]) == (
                "popularity",
                None,
                "no_data",
            )
            assert body["items"] == [] and len(body["recommendation_id"]) == 32


async def test_popular_items_answer_before_any_model(settings: Settings) -> None:
    # A short refresh interval: the popular list must follow it without any manual reload
    # (it used to refresh every 300 s whatever the setting said).
    async with running_app(day_one(settings, refresh_interval_s=0.2)) as client:
        assert (await client.get("/recommend", params={"user_id": "new"})).json()["items"] == []
        await post_history(client, "a", ["hit", "second", "third"])
        await post_history(client, "b", ["hit", "second"])
        await post_history(client, "c", ["hit"])
        body = await until_popular(client)
        assert body["fallback"] == "no_model" and body["model"] == "popularity"
        assert [i["item_id"] for i in body["items"]] == ["hit", "second", "third"]
        scores = [i["score"] for i in body["items"]]
        assert scores == sorted(scores, reverse=True)
        # What the user has seen (stored, or sent as history) and excluded items are left out.
        seen = await client.get("/recommend", params={"user_id": "b", "k": 5})
        assert [i["item_id"] for i in seen.json()["items"]] == ["third"]
        post = await client.post(
            "/recommend", json={"user_id": "anon", "k": 1, "history": ["hit"], "explain": True}
        )
        assert post.json()["items"] == [{"item_id": "second", "score": 1.0, "because": []}]
        excluded = await client.get("/recommend", params={"user_id": "new", "exclude": "hit"})
        assert [i["item_id"] for i in excluded.json()["items"]] == ["second", "third"]
        metrics = (await client.get("/metrics")).text
        assert 'recsys_fallbacks_total{reason="no_model"}' in metrics


async def test_compare_similar_and_named_models_without_a_model(settings: Settings) -> None:
    async with running_app(day_one(settings)) as client:
        await post_history(client, "a", ["x", "y"])
        compare = await client.get("/compare", params={"user_id": "a"})
        assert compare.status_code == 200
        assert compare.json()["models"] == [] and compare.json()["overlap"] == []
        assert (await client.get("/compare/offline")).json() == {"models": []}
        named = await client.get("/compare", params={"user_id": "a", "models": "mf"})
        assert named.status_code == 404 and "mf" in named.json()["detail"]
        similar = await client.get("/items/x/similar")
        assert similar.status_code == 404 and "x" in similar.json()["detail"]
        model = await client.get("/recommend", params={"user_id": "a", "model": "mf"})
        assert model.status_code == 404 and "not loaded" in model.json()["detail"]
        models = (await client.get("/models")).json()
        assert models == {"models": [], "default": None, "errors": {}}


async def test_a_slow_popular_query_runs_less_often(settings: Settings) -> None:
    # The GROUP BY may keep the database busy at most 1/POPULAR_DUTY of the time per replica.
    async with running_app(day_one(settings)) as client:
        await post_history(client, "a", ["x", "y"])
        services = client.app.state.services  # type: ignore[attr-defined]
        catalog = Catalog(services.sessionmaker, popular_every_s=0.0)
        async with services.sessionmaker() as session:
            started = time.monotonic()
            await catalog.refresh(session)
            took = time.monotonic() - started
        assert catalog.popular == ["x", "y"]
        wait = catalog._popular_due - time.monotonic()
        assert 0 < wait <= POPULAR_DUTY * took


async def test_day_one_answers_follow_filters_and_ignore_negative_feedback(
    settings: Settings,
) -> None:
    async with running_app(day_one(settings, refresh_interval_s=0.2)) as client:
        items = [
            {"item_id": "hit", "categories": ["hats"]},
            {"item_id": "second", "categories": ["shoes/running"]},
            {"item_id": "third", "categories": ["shoes"]},
        ]
        assert (await client.put("/items", json={"items": items})).status_code == 200
        await post_history(client, "a", ["hit", "second", "third"])
        await post_history(client, "b", ["hit", "second"])
        # Three users dislike "third": negative feedback does not make an item popular.
        for user in ("d1", "d2", "d3"):
            dislike = {"user_id": user, "item_id": "third", "type": "dislike"}
            assert (await client.post("/events", json={"events": [dislike]})).status_code == 200
        body = await until_popular(client)
        assert [i["item_id"] for i in body["items"]] == ["hit", "second", "third"]
        shoes = await client.get("/recommend", params={"user_id": "new", "category": "shoes"})
        assert [i["item_id"] for i in shoes.json()["items"]] == ["second", "third"]
        assert shoes.json()["fallback"] == "no_model"
        none = await client.get("/recommend", params={"user_id": "new", "category": "socks"})
        assert none.status_code == 200 and none.json()["items"] == []
