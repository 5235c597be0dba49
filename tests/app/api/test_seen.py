"""Seen items over the whole history, dislikes, ratings and repeats, through /recommend on the
real Postgres + Redis and on the embedded default (SQLite + the in-process cache)."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import torch

from app.config import Settings
from app.serving.state import UserState
from tests.app.serving_fixtures import ids, post_history
from tests.conftest import free_port, running_app

CATALOG = [f"sku-{n}" for n in range(60)]  # the generated shop's items


def event(user: str, item: str, kind: str, at: int, value: float | None = None) -> dict[str, Any]:
    """One event for POST /events, `at` seconds into the test's timeline."""
    body: dict[str, Any] = {"event_id": uuid.uuid4().hex, "user_id": user, "item_id": item}
    body |= {"type": kind, "timestamp": 1_750_000_000 + at}
    return body | ({} if value is None else {"value": value})


async def post(client: httpx.AsyncClient, *events: dict[str, Any]) -> None:
    """Store events through the API."""
    response = await client.post("/events", json={"events": list(events)})
    assert response.status_code == 200, response.text


async def every_item(client: httpx.AsyncClient, user: str, **params: Any) -> list[str]:
    """The user's whole list (k beyond the catalog): every item not masked."""
    query = {"user_id": user, "k": 1000, "model": "mf", **params}
    return ids(await client.get("/recommend", params=query))


async def long_history(client: httpx.AsyncClient, user: str, old: int, recent: int) -> None:
    """`old` distinct items long ago, then 200 events over `recent` other items: the old ones
    lie beyond the 200-event model input."""
    events = [event(user, CATALOG[n], "view", n) for n in range(old)]
    events += [event(user, CATALOG[old + n % recent], "click", 100 + n) for n in range(200)]
    await post(client, *events)


@pytest.fixture
async def client(serving_settings: Settings) -> httpx.AsyncClient:  # type: ignore[override]
    """A client of an app that serves the tiny trained models, with a 200-event model input
    (`long_history` puts the old items beyond it)."""
    async with running_app(serving_settings.model_copy(update={"history_len": 200})) as http:
        yield http  # type: ignore[misc]


@pytest.mark.parametrize("model", ["mf", "sasrec"])
async def test_items_beyond_the_model_input_never_come_back(
    client: httpx.AsyncClient, model: str
) -> None:
    await long_history(client, "long", old=40, recent=5)
    cache = client.app.state.cache  # type: ignore[attr-defined]
    cold = await every_item(client, "long", model=model)  # built from the database
    assert len(cold) == 60 - 45 and not set(cold) & set(CATALOG[:45])
    assert await every_item(client, "long", model=model) == cold  # the cached state
    assert len(await cache.get_history("long")) == 200  # the model input stays 200 events
    await post(client, event("long", CATALOG[45], "view", 1000))  # the cached marks change
    assert CATALOG[0] in (await cache.get_marks("long") or {})
    after = await every_item(client, "long", model=model)
    assert set(after) == set(cold) - {CATALOG[45]}
    top = ids(await client.get("/recommend", params={"user_id": "long", "k": 5, "model": model}))
    assert len(top) == 5 and not set(top) & set(CATALOG[:46])


async def test_seen_types_decide_what_is_seen(serving_settings: Settings) -> None:
    settings = serving_settings.model_copy(update={"seen_types": ("purchase",)})
    async with running_app(settings) as client:
        await post_history(client, "viewer", CATALOG[:5])
        await post(client, event("viewer", CATALOG[5], "purchase", 100))
        items = await every_item(client, "viewer")
        assert CATALOG[5] not in items and set(CATALOG[:5]) <= set(items)
        assert len(items) == 59


async def test_repeats_flag_and_setting(client: httpx.AsyncClient) -> None:
    await post_history(client, "shopper", CATALOG[:10])
    assert not set(await every_item(client, "shopper")) & set(CATALOG[:10])
    assert len(await every_item(client, "shopper", repeats="true")) == 60
    body = {"user_id": "shopper", "k": 1000, "model": "mf", "repeats": True}
    assert len(ids(await client.post("/recommend", json=body))) == 60
    await post(client, event("shopper", CATALOG[3], "dislike", 100))
    assert CATALOG[3] not in await every_item(client, "shopper", repeats="true")
    assert len(await every_item(client, "shopper")) == 50
    bad = await client.get("/recommend", params={"user_id": "shopper", "repeats": "often"})
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["query", "repeats"]


async def test_allow_repeats_setting(serving_settings: Settings) -> None:
    settings = serving_settings.model_copy(update={"allow_repeats": True})
    async with running_app(settings) as client:
        await post_history(client, "refill", CATALOG[:10])
        await post(client, event("refill", CATALOG[11], "hide", 100))
        for _ in range(2):  # built, then cached
            items = await every_item(client, "refill")
            assert len(items) == 59 and CATALOG[11] not in items
        seen_out = await every_item(client, "refill", repeats="false")
        assert len(seen_out) == 49 and not set(seen_out) & {*CATALOG[:10], CATALOG[11]}


@pytest.mark.parametrize("negative", ["dislike", "hide"])
async def test_negative_feedback_hides_until_a_later_positive_event(
    client: httpx.AsyncClient, negative: str
) -> None:
    cache = client.app.state.cache  # type: ignore[attr-defined]
    await post_history(client, "picky", CATALOG[:5])
    top = ids(await client.get("/recommend", params={"user_id": "picky", "k": 3, "model": "mf"}))
    await post(client, event("picky", top[0], negative, 100))
    # The very next request, from the same cache that just served the list.
    after = ids(await client.get("/recommend", params={"user_id": "picky", "k": 3, "model": "mf"}))
    assert top[0] not in after and after[:2] == top[1:]
    assert top[0] not in await every_item(client, "picky", repeats="true")
    assert await cache.get_history("picky") in (None, CATALOG[:5])  # never model input
    await post(client, event("picky", top[0], "view", 200))
    assert top[0] in await every_item(client, "picky", repeats="true")
    assert top[0] not in await every_item(client, "picky")  # viewed now: seen


async def test_ratings_by_value(client: httpx.AsyncClient) -> None:
    cache = client.app.state.cache  # type: ignore[attr-defined]
    await post_history(client, "rater", CATALOG[:4])
    await post(
        client,
        event("rater", CATALOG[10], "rating", 100, 1.0),
        event("rater", CATALOG[11], "rating", 101, 5.0),
        event("rater", CATALOG[12], "rating", 102, 3.0),
        event("rater", CATALOG[13], "rating", 103),
    )
    items = await every_item(client, "rater")
    assert not set(items) & {*CATALOG[:4], *CATALOG[10:14]} and len(items) == 52
    again = await every_item(client, "rater", repeats="true")
    assert CATALOG[10] not in again and {*CATALOG[11:14]} <= set(again)  # 1 acts as a dislike
    history = await cache.get_history("rater")
    assert history in (None, [*CATALOG[:4], CATALOG[11], CATALOG[12], CATALOG[13]])


async def test_cache_down_still_masks_every_seen_item(
    pg_database: str, trained_models: Path
) -> None:
    settings = Settings(
        database_url=pg_database,
        redis_url=f"redis://127.0.0.1:{free_port()}/0",  # nobody listens
        cache_timeout_s=0.2,
        model_dir=trained_models,
        log_level="ERROR",
    )
    user = f"offline-{uuid.uuid4().hex[:6]}"
    async with running_app(settings) as client:
        await long_history(client, user, old=30, recent=5)
        await post(client, event(user, CATALOG[40], "dislike", 1000))
        items = await every_item(client, user, repeats="true")
        assert CATALOG[40] not in items and len(items) == 59
        items = await every_item(client, user)
        assert len(items) == 60 - 36 and not set(items) & {*CATALOG[:35], CATALOG[40]}
        assert (await client.get("/readyz")).json()["cache"] == "degraded"


async def test_serving_folds_in_with_the_event_weights_training_used(
    serving_settings: Settings,
) -> None:
    """A user's vector in the service is the model's fold-in of their history with each item's
    weight (the largest of its event types'), as retrain trains with: with purchase weight 5,
    not the unweighted one."""
    serving_settings.event_weights = {"view": 1.0, "click": 1.0, "purchase": 5.0, "rating": 1.0}
    async with running_app(serving_settings) as client:
        # sku-2 viewed then purchased: weight 5; the rest views only.
        events = [event("buyer", f"sku-{n}", "view", n) for n in range(4)]
        await post(client, *events, event("buyer", "sku-2", "purchase", 10))
        await every_item(client, "buyer")  # builds and caches the state
        cache = client.app.state.cache  # type: ignore[attr-defined]
        loaded = client.app.state.services.registry.models["mf"]  # type: ignore[attr-defined]
        found = await cache.lookup("buyer", loaded.cache_field)
        served = UserState.unpack(found.vector, loaded.dim)
        assert served is not None
        history = np.asarray(loaded.indices(["sku-0", "sku-1", "sku-2", "sku-3", "sku-2"]))
        weights = [np.array([1.0, 1.0, 5.0, 1.0, 5.0])]
        with torch.inference_mode():
            weighted = loaded.model.user_vectors([history], weights=weights)[0].numpy()
            plain = loaded.model.user_vectors([history])[0].numpy()
        np.testing.assert_allclose(served.vector, weighted, rtol=1e-4, atol=1e-5)
        assert not np.allclose(weighted, plain, rtol=1e-3, atol=1e-4)
