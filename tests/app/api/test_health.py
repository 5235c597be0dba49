"""Probes, metrics, request ids, and degradation when a dependency is down."""

from __future__ import annotations

import time
import uuid

import httpx

from app.config import Settings
from tests.conftest import free_port, running_app


async def test_healthz_and_readyz(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    ready = await client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["database"] == "ok" and ready.json()["cache"] == "ok"


async def test_request_id_is_echoed_or_made(client: httpx.AsyncClient) -> None:
    given = await client.get("/healthz", headers={"X-Request-ID": "abc-123"})
    assert given.headers["x-request-id"] == "abc-123"
    assert len((await client.get("/healthz")).headers["x-request-id"]) == 32


async def test_metrics_expose_latency_per_route(client: httpx.AsyncClient) -> None:
    await client.get("/healthz")
    await client.get("/items/nope")
    body = (await client.get("/metrics")).text
    assert 'recsys_http_request_seconds_bucket{le="0.005",method="GET",route="/healthz"' in body
    assert 'recsys_http_requests_total{method="GET",route="/items/{item_id}",status="404"}' in body


async def test_unreachable_postgres_gives_503_not_a_hang(tmp_path: object) -> None:
    url = f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/nothing"
    settings = Settings(database_url=url, db_connect_timeout_s=1.0, log_level="WARNING")
    async with running_app(settings) as client:
        started = time.monotonic()
        ready = await client.get("/readyz")
        events = await client.post(
            "/events", json={"events": [{"user_id": "u", "item_id": "i", "type": "view"}]}
        )
        assert ready.status_code == 503 and ready.json()["database"] == "unavailable"
        assert events.status_code == 503 and "database" in events.json()["detail"]
        assert time.monotonic() - started < 10  # fails fast rather than waiting on a dead server
        assert (await client.get("/healthz")).status_code == 200


async def test_redis_down_degrades_but_ingestion_works(pg_database: str) -> None:
    settings = Settings(
        database_url=pg_database,
        redis_url=f"redis://127.0.0.1:{free_port()}/0",
        redis_prefix=f"t-{uuid.uuid4().hex[:6]}:",
        log_level="ERROR",
    )
    async with running_app(settings) as client:
        ready = await client.get("/readyz")
        assert ready.status_code == 200
        assert ready.json()["cache"] == "degraded" and ready.json()["status"] == "degraded"
        body = {
            "events": [
                {"event_id": uuid.uuid4().hex, "user_id": "u", "item_id": "i", "type": "view"}
            ]
        }
        assert (await client.post("/events", json=body)).json()["accepted"] == 1
        assert "recsys_cache_errors_total" in (await client.get("/metrics")).text


async def test_unmigrated_database_is_not_ready(tmp_path: object) -> None:
    settings = Settings(database_url=f"sqlite+aiosqlite:///{tmp_path}/empty.db", log_level="ERROR")
    async with running_app(settings) as client:
        assert (await client.get("/readyz")).status_code == 503
