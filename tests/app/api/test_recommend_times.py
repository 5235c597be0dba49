"""Event times reach a model that reads them (SASRec's time gaps, the default): stored events'
times through the cache and the database, an anonymous history's through POST /recommend. The
served list is the model's offline list for the same history and times."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import numpy as np
import pytest
import torch

from app.config import Settings
from app.serving.registry import LoadedModel
from tests.app.serving_fixtures import ids
from tests.conftest import running_app

GROUP = [f"sku-{n}" for n in range(10)]  # one of the generated shop's item groups, in order
# Gaps of seconds, an hour, days: different time-gap buckets, so times change the vector.
OFFSETS = [0, 5, 3605, 3 * 86_400, 3 * 86_400 + 40, 40 * 86_400]
START = 1_750_000_000


@pytest.fixture
async def client(serving_settings: Settings) -> httpx.AsyncClient:  # type: ignore[override]
    """A client of an app that serves the tiny trained models."""
    async with running_app(serving_settings) as http:
        yield http  # type: ignore[misc]


def sasrec(client: httpx.AsyncClient) -> LoadedModel:
    """The served SASRec checkpoint."""
    return client.app.state.services.registry.models["sasrec"]  # type: ignore[attr-defined,no-any-return]


async def post_timed(client: httpx.AsyncClient, user: str, items: list[str]) -> list[int]:
    """The user viewed `items` at START + OFFSETS; returns the times (epoch seconds)."""
    times = [START + offset for offset in OFFSETS[: len(items)]]
    events = [
        {"event_id": uuid.uuid4().hex, "user_id": user, "item_id": item, "type": "view"}
        | {"timestamp": at}
        for item, at in zip(items, times, strict=True)
    ]
    response = await client.post("/events", json={"events": events})
    assert response.status_code == 200, response.text
    return times


def offline(model: LoadedModel, items: list[str], times: list[int] | None, k: int) -> list[str]:
    """The model's own top k for the history (its items masked), as offline evaluation ranks."""
    history = np.asarray(model.indices(items), dtype=np.int64)
    stamps = None if times is None else [np.asarray(times, dtype=np.int64)]
    top, _ = model.model.recommend([history], k, times=stamps)
    return [model.item_ids[i] for i in top[0].tolist()]


async def served(client: httpx.AsyncClient, user: str, k: int = 10) -> list[str]:
    """GET /recommend's items from SASRec."""
    params = {"user_id": user, "k": k, "model": "sasrec"}
    return ids(await client.get("/recommend", params=params))


async def test_a_time_gaps_model_serves_its_offline_list(client: httpx.AsyncClient) -> None:
    model = sasrec(client)
    assert model.model.uses_times  # the default config reads times
    items = GROUP[:6]
    times = await post_timed(client, "tina", items)
    history = [np.asarray(model.indices(items), dtype=np.int64)]
    with torch.inference_mode():
        timed = model.model.user_vectors(history, [np.asarray(times)])
        assert not torch.allclose(timed, model.model.user_vectors(history), atol=1e-4)
    want = offline(model, items, times, 10)
    assert want != offline(model, items, None, 10)  # so a served list without times differs
    assert await served(client, "tina") == want  # a miss: the history read from the database
    cache = client.app.state.cache  # type: ignore[attr-defined]
    found = await cache.lookup("tina", "other:v0")
    assert (found.history, found.times) == (items, times)  # the cached history keeps the times
    assert await served(client, "tina") == want  # the cached state
    await cache.backend.drop_users(["tina"])  # vector gone, history cached
    assert await served(client, "tina") == want
    await cache.backend.drop_users(["tina"], history=True)  # a miss rebuilds the times
    assert await served(client, "tina") == want
    assert (await cache.lookup("tina", "other:v0")).times == times


async def test_new_events_append_their_times(client: httpx.AsyncClient) -> None:
    model = sasrec(client)
    times = await post_timed(client, "uma", GROUP[:3])
    await served(client, "uma")  # caches the history
    later = START + 90 * 86_400
    event = {"user_id": "uma", "item_id": GROUP[3], "type": "click", "timestamp": later}
    assert (await client.post("/events", json={"events": [event]})).status_code == 200
    cache = client.app.state.cache  # type: ignore[attr-defined]
    found = await cache.lookup("uma", "other:v0")
    assert (found.history, found.times) == (GROUP[:4], [*times, later])
    assert await served(client, "uma") == offline(model, GROUP[:4], [*times, later], 10)


async def test_a_history_cached_before_times_is_read_again(client: httpx.AsyncClient) -> None:
    cache = client.app.state.cache  # type: ignore[attr-defined]
    if cache.kind != "redis":
        pytest.skip("only Redis outlives a deployment")
    model = sasrec(client)
    times = await post_timed(client, "vic", GROUP[:5])
    key = f"{cache.backend.prefix}hist:vic"
    await cache.backend.client.rpush(key, *GROUP[:5])  # the list as it was cached before
    assert await served(client, "vic") == offline(model, GROUP[:5], times, 10)
    assert (await cache.lookup("vic", "other:v0")).times == times  # stored again, with times


async def anonymous(client: httpx.AsyncClient, history: list[Any]) -> httpx.Response:
    """POST /recommend with an anonymous history."""
    body = {"user_id": "anon-t", "k": 8, "model": "sasrec", "history": history}
    return await client.post("/recommend", json=body)


async def test_an_anonymous_history_with_timestamps(client: httpx.AsyncClient) -> None:
    model = sasrec(client)
    items, times = GROUP[2:7], [START + offset for offset in OFFSETS[:5]]
    iso = ["2025-06-15T15:06:40Z", "2025-06-15T15:06:45Z", 1_750_003_605_000]  # ms too
    entries = [
        {"item_id": i, "timestamp": t} for i, t in zip(items, [*iso, *times[3:]], strict=True)
    ]
    assert ids(await anonymous(client, entries)) == offline(model, items, times, 8)
    # Plain ids stay valid: their times are not known.
    assert ids(await anonymous(client, items)) == offline(model, items, None, 8)


@pytest.mark.parametrize(
    ("history", "message"),
    [
        (["sku-1", {"item_id": "sku-2", "timestamp": START}], "every history entry"),
        (
            [
                {"item_id": "sku-1", "timestamp": START},
                {"item_id": "sku-2", "timestamp": START - 1},
            ],
            "must not decrease",
        ),
        ([{"item_id": "sku-1", "timestamp": 100}], "after 1995"),
        ([{"item_id": "sku-1", "timestamp": 4_000_000_000}], "not in the future"),
    ],
)
async def test_history_timestamps_are_validated(
    client: httpx.AsyncClient, history: list[Any], message: str
) -> None:
    response = await anonymous(client, history)
    assert response.status_code == 422, response.text
    detail = response.json()["detail"][0]
    assert detail["loc"] == ["body", "history"] and message in detail["msg"]


async def test_a_history_entry_needs_an_item_and_a_valid_time(client: httpx.AsyncClient) -> None:
    for entry, field in [
        ({"item_id": "sku-1", "timestamp": "yesterday"}, "timestamp"),
        ({"item_id": "sku-1", "timestamp": START, "value": 1}, "value"),
    ]:
        response = await anonymous(client, [entry])
        assert response.status_code == 422, response.text
        locations = [d["loc"] for d in response.json()["detail"]]
        assert ["body", "history", 0, field] in locations
    untimed = await anonymous(client, [{"item_id": "sku-1"}])  # an object without a time: as an id
    assert untimed.status_code == 200, untimed.text
