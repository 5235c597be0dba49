"""A/B experiments end to end: sticky arms, overrides, exposures, attribution, the report."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from app.config import Settings
from tests.app.serving_fixtures import post_history
from tests.conftest import running_app

ARMS = {
    "arms": [
        {"name": "a", "model": "mf", "weight": 1},
        {"name": "b", "model": "sasrec", "weight": 1},
    ]
}


@pytest.fixture
async def client(serving_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """A client of an app that serves the tiny trained models."""
    async with running_app(serving_settings) as http:
        yield http


async def event(client: httpx.AsyncClient, user: str, item: str, kind: str, **extra: Any) -> None:
    """Post one event."""
    body = {
        "events": [
            {"event_id": uuid.uuid4().hex, "user_id": user, "item_id": item, "type": kind, **extra}
        ]
    }
    assert (await client.post("/events", json=body)).status_code == 200


async def test_put_get_and_validation(client: httpx.AsyncClient) -> None:
    stored = (await client.put("/experiments/home", json=ARMS)).json()
    assert stored["salt"] == "home" and stored["status"] == "running"
    read = (await client.get("/experiments/home")).json()
    assert read["arms"] == stored["arms"]
    assert read["updated_at"] == stored["updated_at"]  # UTC on both backends (SQLite: naive)
    assert (await client.get("/experiments/nope")).status_code == 404
    bad_model = {"arms": [{"name": "a", "model": "gpt", "weight": 1}]}
    assert (await client.put("/experiments/home", json=bad_model)).status_code == 422
    same_names = {"arms": [{"name": "a", "model": "mf", "weight": 1}] * 2}
    assert (await client.put("/experiments/home", json=same_names)).status_code == 422
    zero = {"arms": [{"name": "a", "model": "mf", "weight": 0}]}
    response = await client.put("/experiments/home", json=zero)
    assert response.status_code == 422 and response.json()["detail"][0]["loc"][-1] == "weight"


async def test_start_and_guardrail_are_stored(client: httpx.AsyncClient) -> None:
    first = (await client.put("/experiments/home", json=ARMS)).json()
    assert first["started_at"] is not None and first["guardrail"] is None
    again = (await client.put("/experiments/home", json={**ARMS, "status": "paused"})).json()
    assert again["started_at"] == first["started_at"]  # a change keeps the start
    guardrail = {"metric": "fallback_rate", "tolerance": 0.1}
    body = {**ARMS, "started_at": "2026-11-01T00:00:00Z", "guardrail": guardrail}
    stored = (await client.put("/experiments/home", json=body)).json()
    assert stored["started_at"].startswith("2026-11-01T00:00:00")
    assert (await client.get("/experiments/home")).json()["guardrail"] == guardrail
    bad = {**ARMS, "guardrail": {"metric": "speed"}}
    response = await client.put("/experiments/home", json=bad)
    assert response.status_code == 422 and response.json()["detail"][0]["loc"][-1] == "metric"


async def test_sticky_arms_and_override(client: httpx.AsyncClient) -> None:
    await client.put("/experiments/default", json=ARMS)
    seen = set()
    for n in range(30):
        user = f"user-{n}"
        first = (await client.get("/recommend", params={"user_id": user})).json()
        again = (await client.get("/recommend", params={"user_id": user})).json()
        assert first["variant"] == again["variant"] and first["experiment"] == "default"
        assert first["model"] == {"a": "mf", "b": "sasrec"}[first["variant"]]
        seen.add(first["variant"])
    assert seen == {"a", "b"}
    override = (
        await client.get("/recommend", params={"user_id": "u", "model": "popularity"})
    ).json()
    assert (override["variant"], override["model"]) == ("override", "popularity")
    await client.put("/experiments/default", json={**ARMS, "status": "paused"})
    paused = (await client.get("/recommend", params={"user_id": "user-1"})).json()
    assert (paused["variant"], paused["model"]) == (None, "sasrec")


async def test_report_counts_a_scripted_scenario(client: httpx.AsyncClient) -> None:
    await client.put("/experiments/default", json=ARMS)
    served: dict[str, list[dict[str, Any]]] = {"a": [], "b": []}
    for n in range(40):
        user = f"shopper-{n}"
        await post_history(client, user, ["sku-1", "sku-2"])
        body = (await client.get("/recommend", params={"user_id": user, "k": 5})).json()
        served[body["variant"]].append(body)
    a, b = served["a"], served["b"]
    assert len(a) >= 3 and len(b) >= 2
    # Arm a: two clicks carrying the recommendation_id, one of them converts; a click on an
    # item that was not shown and without an id does not count.
    for body in a[:2]:
        rid = body["recommendation_id"]
        await event(
            client, body["user_id"], body["items"][0]["item_id"], "click", recommendation_id=rid
        )
    await event(
        client,
        a[0]["user_id"],
        a[0]["items"][0]["item_id"],
        "purchase",
        recommendation_id=a[0]["recommendation_id"],
    )
    await event(client, a[2]["user_id"], "sku-59-not-shown", "click")
    # Arm b: a click without an id on a shown item, inside the attribution window.
    await event(client, b[0]["user_id"], b[0]["items"][1]["item_id"], "click")
    await client.get("/recommend", params={"user_id": "x", "model": "mf"})  # an override
    await client.app.state.services.exposures.flush()  # type: ignore[attr-defined]
    report = (await client.get("/experiments/default/report")).json()
    arms = {arm["arm"]: arm for arm in report["arms"]}
    assert arms["a"]["exposures"] == len(a) and arms["b"]["exposures"] == len(b)
    assert (arms["a"]["clicks"]["count"], arms["a"]["conversions"]["count"]) == (2, 1)
    assert (arms["b"]["clicks"]["count"], arms["b"]["conversions"]["count"]) == (1, 0)
    assert arms["override"]["exposures"] == 1
    low, high = arms["a"]["clicks"]["ci95"]
    assert low < 2 / len(a) < high
    assert report["control"] == "a" and arms["b"]["vs_control"]["clicks"]["p_value"] is not None


async def test_experiments_need_the_admin_key(serving_settings: Settings) -> None:
    serving_settings.admin_key = "adm"
    async with running_app(serving_settings) as client:
        assert (await client.put("/experiments/e", json=ARMS)).status_code == 401
        ok = await client.put("/experiments/e", json=ARMS, headers={"X-API-Key": "adm"})
        assert ok.status_code == 200
        assert (await client.get("/experiments/e/report")).status_code == 401
