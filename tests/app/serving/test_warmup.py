"""A new version warms the most active users' states before it serves (app/serving/warmup.py)."""

from __future__ import annotations

import asyncio
import functools
import os
import shutil
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from sqlalchemy.ext.asyncio import create_async_engine

from app.config import Settings
from app.db.session import make_sessionmaker
from app.serving.batcher import Encoded
from app.serving.registry import LoadedModel, newest_versions
from app.serving.warmup import active_users, warm_versions
from tests.app.serving_fixtures import copy_models
from tests.conftest import free_port, running_app

GROUP = [f"sku-{n}" for n in range(20)]
DAY = 86_400
NOW = 1_750_000_000


def events(counts: dict[str, int], at: int = NOW) -> dict[str, Any]:
    """A POST /events body: each user viewed `count` items of GROUP, one second apart."""
    return {
        "events": [
            {
                "event_id": uuid.uuid4().hex,
                "user_id": user,
                "item_id": GROUP[n % len(GROUP)],
                "type": "view",
                "timestamp": at + n,
            }
            for user, count in counts.items()
            for n in range(count)
        ]
    }


def promoted(settings: Settings, trained_models: Path, tmp_path: Path, **warm: Any) -> Settings:
    """The settings on a private copy of the checkpoints, with the given warm-up settings."""
    settings.model_dir = copy_models(trained_models, tmp_path / "served")
    settings.refresh_interval_s = 3600  # the tests reload themselves
    for name, value in warm.items():
        setattr(settings, name, value)
    return settings


def add_mf_version(model_dir: Path) -> None:
    """mf/v2: the same weights as a new version, newer on disk, so the next reload swaps it."""
    shutil.copytree(model_dir / "mf" / "v1", model_dir / "mf" / "v2")
    later = time.time() + 60
    os.utime(model_dir / "mf" / "v2", (later, later))


def hits(client: httpx.AsyncClient) -> float:
    """Requests answered from a cached state so far."""
    metrics = client.app.state.metrics  # type: ignore[attr-defined]
    value = metrics.registry.get_sample_value("recsys_cache_lookups_total", {"result": "hit"})
    return value or 0.0


async def first_request_hits(client: httpx.AsyncClient, user: str) -> bool:
    """Whether the user's next mf request is a cache hit; it must be served by v2."""
    before = hits(client)
    response = await client.get("/recommend", params={"user_id": user, "model": "mf"})
    assert response.status_code == 200, response.text
    assert response.json()["model_version"] == "v2"
    return hits(client) == before + 1


async def test_a_promotion_warms_the_most_active_users(
    settings: Settings, trained_models: Path, tmp_path: Path
) -> None:
    settings = promoted(settings, trained_models, tmp_path, warm_users=3)
    async with running_app(settings) as client:
        await client.post("/events", json=events({"ann": 8, "bob": 6, "cat": 5, "dan": 2}))
        add_mf_version(settings.model_dir)
        body = (await client.post("/models/reload")).json()
        assert body["loaded"]["mf"] == "v2"
        report = body["warmup"]["mf"]
        assert (report["version"], report["state"], report["users"]) == ("v2", "done", 3)
        assert (report["warmed"], report["failed"]) == (3, 0)
        for user in ("ann", "bob", "cat"):
            assert await first_request_hits(client, user), user
        assert not await first_request_hits(client, "dan")  # beyond warm_users: cold
        metrics = (await client.get("/metrics")).text
        assert 'recsys_warmup_users_total{model="mf",result="warmed"} 3.0' in metrics
        assert 'recsys_warmup_seconds_count{model="mf"} 1.0' in metrics
        assert 'recsys_warmups_total{model="mf",state="done"} 1.0' in metrics
        assert (await client.get("/readyz")).json()["models"]["warmup"]["mf"]["warmed"] == 3


async def test_a_replica_that_did_not_warm_reads_the_warmed_states(
    pg_settings: Settings, trained_models: Path, tmp_path: Path
) -> None:
    # Two replicas on one database and Redis prefix: A warms the version, B does not.
    settings = promoted(pg_settings, trained_models, tmp_path, warm_users=10)
    quiet = settings.model_copy(update={"warm_users": 0})
    async with running_app(settings) as first, running_app(quiet) as second:
        await first.post("/events", json=events({"ann": 8, "bob": 6}))
        add_mf_version(settings.model_dir)
        assert (await first.post("/models/reload")).json()["warmup"]["mf"]["warmed"] == 2
        body = (await second.post("/models/reload")).json()
        assert body["loaded"]["mf"] == "v2" and body["warmup"] == {}
        assert await first_request_hits(second, "ann")
        assert await first_request_hits(second, "bob")


async def test_a_second_warm_up_finds_the_states_cached(
    pg_settings: Settings, trained_models: Path, tmp_path: Path
) -> None:
    settings = promoted(pg_settings, trained_models, tmp_path, warm_users=10)
    async with running_app(settings) as first, running_app(settings) as second:
        await first.post("/events", json=events({"ann": 8, "bob": 6}))
        add_mf_version(settings.model_dir)
        await first.post("/models/reload")
        report = (await second.post("/models/reload")).json()["warmup"]["mf"]
        assert (report["warmed"], report["cached"]) == (0, 2)


async def test_a_redis_failure_during_warm_up_still_swaps(
    pg_settings: Settings,
    trained_models: Path,
    tmp_path: Path,
    own_redis: tuple[str, subprocess.Popen[bytes]],
) -> None:
    url, server = own_redis
    settings = promoted(pg_settings, trained_models, tmp_path, warm_users=10, redis_url=url)
    async with running_app(settings) as client:
        await client.post("/events", json=events({"ann": 8, "bob": 6}))
        add_mf_version(settings.model_dir)
        server.kill()
        server.wait()
        started = time.monotonic()
        body = (await client.post("/models/reload")).json()
        assert time.monotonic() - started < 5
        assert body["loaded"]["mf"] == "v2"
        report = body["warmup"]["mf"]
        assert (report["state"], report["warmed"], report["failed"]) == ("aborted", 0, 2)
        response = await client.get("/recommend", params={"user_id": "ann", "model": "mf"})
        assert response.status_code == 200 and response.json()["model_version"] == "v2"


async def test_a_database_failure_during_warm_up_still_swaps(
    sqlite_url: str, trained_models: Path, tmp_path: Path
) -> None:
    settings = Settings(database_url=sqlite_url, log_level="WARNING")
    settings = promoted(settings, trained_models, tmp_path, warm_users=10)
    async with running_app(settings) as client:
        await client.post("/events", json=events({"ann": 8}))
        add_mf_version(settings.model_dir)
        services = client.app.state.services  # type: ignore[attr-defined]
        # A database nobody answers on: the query for the active users fails.
        engine = create_async_engine(f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/x")
        services.sessionmaker = make_sessionmaker(engine)
        wanted = {**newest_versions(settings.model_dir)}
        await services.registry.reload(wanted, warm=functools.partial(warm_versions, services))
        await engine.dispose()
        assert services.registry.get("mf").version == "v2"
        assert services.registry.warmups["mf"]["state"] == "aborted"
        metrics = services.metrics.registry
        assert metrics.get_sample_value("recsys_warmups_total", {"model": "mf", "state": "aborted"})


async def test_the_deadline_swaps_a_slow_warm_up(
    sqlite_url: str, trained_models: Path, tmp_path: Path
) -> None:
    settings = Settings(database_url=sqlite_url, log_level="WARNING")
    settings = promoted(settings, trained_models, tmp_path, warm_users=20, warm_seconds=0.5)
    async with running_app(settings) as client:
        await client.post("/events", json=events({f"user-{n}": 3 for n in range(20)}))
        services = client.app.state.services  # type: ignore[attr-defined]
        services.encoder.max_batch = 2
        encode = services.encoder.encode

        async def slow(model: LoadedModel, history: np.ndarray, *args: Any) -> Encoded:
            await asyncio.sleep(0.3)  # a model far slower than the deadline allows
            return await encode(model, history, *args)

        services.encoder.encode = slow
        add_mf_version(settings.model_dir)
        started = time.monotonic()
        body = (await client.post("/models/reload")).json()
        elapsed = time.monotonic() - started
        assert 0.5 <= elapsed < 1.5
        assert body["loaded"]["mf"] == "v2"
        report = body["warmup"]["mf"]
        assert report["state"] == "deadline" and 0 < report["warmed"] < 20


@pytest.mark.parametrize("limit", [2, 3])
async def test_users_are_ranked_by_recent_activity(client: httpx.AsyncClient, limit: int) -> None:
    await client.post("/events", json=events({"ann": 3, "bob": 5, "cat": 5}))
    # Many events, but more than the window (7 days) before the newest event: not active.
    await client.post("/events", json=events({"old": 12}, at=NOW - 30 * DAY))
    services = client.app.state.services  # type: ignore[attr-defined]
    services.settings.warm_users = limit
    assert await active_users(services) == ["bob", "cat", "ann"][:limit]
    services.settings.warm_window_days = 60
    assert await active_users(services) == ["old", "bob", "cat"][:limit]
