"""POST /events against the real Postgres + Redis and the embedded default."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from app.config import Settings
from tests.conftest import running_app


def event(user: str = "u1", item: str = "i1", **extra: Any) -> dict[str, Any]:
    """A valid event with a fresh id."""
    return {"event_id": uuid.uuid4().hex, "user_id": user, "item_id": item, "type": "view", **extra}


async def stored_events(client: httpx.AsyncClient) -> list[tuple[str, str, str]]:
    """(event_id, user_id, item_id) of every stored event, straight from the database."""
    async with client.app.state.sessionmaker() as session:  # type: ignore[attr-defined]
        rows = await session.execute(text("SELECT event_id, user_id, item_id FROM events"))
        return [tuple(r) for r in rows]


async def test_batch_is_stored_and_counted(client: httpx.AsyncClient) -> None:
    batch = [event(item=f"i{n}") for n in range(50)]
    response = await client.post("/events", json={"events": batch})
    assert response.status_code == 200, response.text
    assert response.json() == {"accepted": 50, "duplicates": 0}
    assert sorted(r[0] for r in await stored_events(client)) == sorted(e["event_id"] for e in batch)


async def test_retry_is_idempotent(client: httpx.AsyncClient) -> None:
    batch = [event(item=f"i{n}") for n in range(20)]
    first = await client.post("/events", json={"events": batch})
    retry = await client.post("/events", json={"events": [*batch, event(item="new")]})
    assert first.json() == {"accepted": 20, "duplicates": 0}
    assert retry.json() == {"accepted": 1, "duplicates": 20}
    assert len(await stored_events(client)) == 21


async def test_duplicate_ids_inside_one_batch_are_stored_once(client: httpx.AsyncClient) -> None:
    one = event()
    response = await client.post("/events", json={"events": [one, one]})
    assert response.json() == {"accepted": 1, "duplicates": 1}


async def test_one_bad_event_rejects_the_whole_batch(client: httpx.AsyncClient) -> None:
    batch = [event(item=f"i{n}") for n in range(10)]
    batch[7]["type"] = "like"
    response = await client.post("/events", json={"events": batch})
    assert response.status_code == 422
    (error,) = response.json()["detail"]
    assert error["loc"] == ["body", "events", 7, "type"]
    assert await stored_events(client) == []


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("user_id", ""),
        ("user_id", "u" * 257),
        ("item_id", None),
        ("value", "NaN"),
        ("timestamp", 86_400),  # 1970: a unit or clock mistake
        ("timestamp", "2999-01-01T00:00:00Z"),
        ("timestamp", "yesterday"),
        ("colour", "red"),
    ],
)
async def test_bad_fields_are_named(client: httpx.AsyncClient, field: str, value: Any) -> None:
    bad = event(**{field: value})
    response = await client.post("/events", json={"events": [event(), bad]})
    assert response.status_code == 422, response.text
    locs = [tuple(e["loc"]) for e in response.json()["detail"]]
    assert ("body", "events", 1, field) in locs
    assert await stored_events(client) == []


async def test_millisecond_timestamps_are_understood(client: httpx.AsyncClient) -> None:
    seconds = await client.post("/events", json={"events": [event(timestamp=1_700_000_000)]})
    millis = await client.post("/events", json={"events": [event(timestamp=1_700_000_000_000)]})
    assert seconds.status_code == millis.status_code == 200
    async with client.app.state.sessionmaker() as session:  # type: ignore[attr-defined]
        times = (await session.execute(text("SELECT DISTINCT event_time FROM events"))).all()
    assert len(times) == 1


async def test_defaults_and_coercion(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/events",
        json={
            "events": [
                {
                    "user_id": 42,
                    "item_id": 7,
                    "type": "rating",
                    "value": 4.5,
                    "timestamp": 1_700_000_000,
                }
            ]
        },
    )
    assert response.json() == {"accepted": 1, "duplicates": 0}
    ((event_id, user_id, item_id),) = await stored_events(client)
    assert (user_id, item_id) == ("42", "7") and len(event_id) == 32


async def test_empty_and_malformed_bodies(client: httpx.AsyncClient) -> None:
    assert (await client.post("/events", json={"events": []})).status_code == 422
    assert (await client.post("/events", content=b"{not json")).status_code == 400
    assert (await client.post("/events", json=[event()])).status_code == 422


async def test_batch_limit(settings: Settings) -> None:
    settings.max_events_per_batch = 5
    async with running_app(settings) as client:
        response = await client.post("/events", json={"events": [event() for _ in range(6)]})
        assert response.status_code == 422
        assert response.json()["detail"][0]["loc"] == ["body", "events"]
        assert await stored_events(client) == []


async def test_oversized_body_gets_413(settings: Settings) -> None:
    settings.max_body_bytes = 4096
    async with running_app(settings) as client:
        batch = [event(item="x" * 200) for _ in range(40)]
        assert (await client.post("/events", json={"events": batch})).status_code == 413

        async def chunks() -> Any:  # no Content-Length: the streamed size is capped too
            for _ in range(10):
                yield b" " * 1000

        assert (await client.post("/events", content=chunks())).status_code == 413
        assert await stored_events(client) == []


async def test_write_key(settings: Settings) -> None:
    settings.write_key, settings.admin_key = "w-secret", "a-secret"
    async with running_app(settings) as client:
        body = {"events": [event()]}
        assert (await client.post("/events", json=body)).status_code == 401
        wrong = await client.post("/events", json=body, headers={"X-API-Key": "nope"})
        assert wrong.status_code == 403
        assert "detail" in wrong.json()
        ok = await client.post("/events", json=body, headers={"X-API-Key": "w-secret"})
        assert ok.status_code == 200
        admin = await client.post(
            "/events", json={"events": [event()]}, headers={"X-API-Key": "a-secret"}
        )
        assert admin.status_code == 200
        assert len(await stored_events(client)) == 2


async def test_concurrent_clients_lose_and_double_nothing(client: httpx.AsyncClient) -> None:
    # 8 clients send overlapping batches: every id is sent by two clients at once.
    ids = [uuid.uuid4().hex for _ in range(800)]
    batches = [ids[i * 100 : (i + 1) * 100] for i in range(8)]
    plans = batches + batches[1:] + batches[:1]

    async def send(chunk: list[str]) -> dict[str, int]:
        body = {
            "events": [
                {"event_id": i, "user_id": i[:4], "item_id": i[4:8], "type": "click"} for i in chunk
            ]
        }
        response = await client.post("/events", json=body)
        assert response.status_code == 200, response.text
        return dict(response.json())

    results = await asyncio.gather(*(send(chunk) for chunk in plans))
    assert sum(r["accepted"] for r in results) == 800
    assert sum(r["duplicates"] for r in results) == 800
    stored = [r[0] for r in await stored_events(client)]
    assert sorted(stored) == sorted(ids)


async def test_events_update_cached_history(client: httpx.AsyncClient) -> None:
    cache = client.app.state.cache  # type: ignore[attr-defined]
    assert await cache.store(await cache.lookup("u9", "mf:v1"), b"vec", ["a", "b"])
    await client.post("/events", json={"events": [event("u9", "c"), event("u9", "d")]})
    assert await cache.get_history("u9") == ["a", "b", "c", "d"]
    assert (await cache.lookup("u9", "mf:v1")).vector is None
    # A retried batch must not append twice: the history is dropped and reloads from the DB.
    again = [event("u9", "e")]
    await client.post("/events", json={"events": again})
    await client.post("/events", json={"events": again})
    assert await cache.get_history("u9") is None


async def test_metrics_count_ingestion(client: httpx.AsyncClient) -> None:
    batch = [event(), event()]
    await client.post("/events", json={"events": batch})
    await client.post("/events", json={"events": batch})
    await client.post("/events", json={"events": [{"user_id": "x"}]})
    text_ = (await client.get("/metrics")).text
    assert "recsys_events_ingested_total 2.0" in text_
    assert "recsys_events_duplicate_total 2.0" in text_
    assert 'recsys_events_rejected_total{reason="validation"} 1.0' in text_
    assert 'route="/events",status="200"' in text_


def test_user_updates_order_by_event_time() -> None:
    from datetime import UTC, datetime

    from app.ingest.flow import to_columns, user_updates

    def at(second: int) -> datetime:
        return datetime(2026, 1, 1, 0, 0, second, tzinfo=UTC)

    events: list[Any] = [
        {"user_id": "a", "item_id": "late", "type": "view", "timestamp": at(30)},
        {"user_id": "b", "item_id": "only", "type": "view", "timestamp": at(20)},
        {"user_id": "a", "item_id": "early", "type": "view", "timestamp": at(10)},
        {"user_id": "a", "item_id": "tie", "type": "view", "timestamp": at(30)},
    ]
    columns, errors = to_columns(events)
    assert errors == []
    assert user_updates(columns)[0] == {"a": ["early", "late", "tie"], "b": ["only"]}
    in_order, _ = to_columns(sorted(events, key=lambda e: e["timestamp"]))
    assert user_updates(in_order)[0] == {"a": ["early", "late", "tie"], "b": ["only"]}
