"""Erasure over HTTP: rows, cache, checkpoint metadata, the receipt; other replicas; retrain."""

from __future__ import annotations

import asyncio
import hashlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from app.config import Settings
from app.db import repo
from app.db.session import make_engine
from app.training.retrain import read_events, retrain
from models.checkpoint import load_checkpoint
from tests.app.serving_fixtures import copy_models, events_for, post_history
from tests.conftest import running_app

ADMIN = {"X-API-Key": "adm"}


@pytest.fixture
def pg_settings(pg_settings: Settings) -> Settings:
    """tests/app/conftest.py's Postgres + Redis settings, with an admin key."""
    pg_settings.admin_key = "adm"
    return pg_settings


ITEMS = ["sku-1", "sku-2", "sku-3"]


def with_user_list(model_dir: Path, users: list[str]) -> Path:
    """Give a checkpoint the `user_ids` list that checkpoints written before issue 14 hold."""
    meta_path = model_dir / "mf" / "v1" / "meta.json"
    meta = json.loads(meta_path.read_text())
    meta["user_ids"] = users
    meta_path.write_text(json.dumps(meta))
    return meta_path


async def stored_rows(client: httpx.AsyncClient, table: str, user: str) -> int:
    """Rows of a table that belong to the user, read straight from the database."""
    async with client.app.state.sessionmaker() as session:  # type: ignore[attr-defined]
        query = text(f"SELECT count(*) FROM {table} WHERE user_id = :user")
        return int((await session.execute(query, {"user": user})).scalar_one())


async def test_erasure_removes_rows_cache_and_checkpoint_ids_and_keeps_a_receipt(
    serving_settings: Settings, trained_models: Path, tmp_path: Path
) -> None:
    serving_settings.model_dir = copy_models(trained_models, tmp_path / "models")
    serving_settings.admin_key = "adm"
    meta_path = with_user_list(serving_settings.model_dir, ["bob", "mallory", "kim"])
    version_dir_mtime = meta_path.parent.stat().st_mtime_ns
    async with running_app(serving_settings) as client:
        services = client.app.state.services  # type: ignore[attr-defined]
        await post_history(client, "mallory", ITEMS)
        await post_history(client, "bob", ITEMS)
        params = {"user_id": "mallory", "model": "mf"}
        assert (await client.get("/recommend", params=params)).json()["fallback"] is None
        await services.exposures.flush()
        assert await stored_rows(client, "exposures", "mallory") == 1
        assert (await services.cache.lookup("mallory", "mf:v1")).vector is not None
        assert (await client.delete("/users/mallory")).status_code == 401
        assert (await client.get("/users/mallory/erasure", headers=ADMIN)).status_code == 404

        erased = await client.delete("/users/mallory", headers=ADMIN)
        assert erased.status_code == 200, erased.text
        assert erased.json() == {"events": 3, "exposures": 1, "checkpoints": 1, "cache": "dropped"}
        assert await stored_rows(client, "events", "mallory") == 0
        assert await stored_rows(client, "exposures", "mallory") == 0
        assert await stored_rows(client, "events", "bob") == 3
        seen = await services.cache.lookup("mallory", "mf:v1")
        assert seen.vector is None and seen.history is None
        assert (await client.get("/recommend", params=params)).json()["fallback"] == "unknown_user"
        # The checkpoint no longer names her, still loads, and does not look newer than it was.
        assert json.loads(meta_path.read_text())["user_ids"] == ["bob", "kim"]
        assert "mallory" not in meta_path.read_text()
        assert meta_path.parent.stat().st_mtime_ns == version_dir_mtime
        load_checkpoint(meta_path.parent)
        assert all("user_ids" not in m.meta for m in services.registry.models.values())

        receipt = await client.get("/users/mallory/erasure", headers=ADMIN)
        assert receipt.status_code == 200, receipt.text
        body = receipt.json()
        assert body["subject"] == hashlib.sha256(b"mallory").hexdigest()
        assert body["counts"] == {"events": 3, "exposures": 1, "checkpoints": 1}
        erased_at = datetime.fromisoformat(body["erased_at"].replace("Z", "+00:00"))
        if erased_at.tzinfo is None:
            erased_at = erased_at.replace(tzinfo=UTC)
        assert abs(datetime.now(UTC) - erased_at) < timedelta(minutes=1)
        assert "mallory" not in receipt.text.replace(body["subject"], "")
        assert (await client.get("/users/bob/erasure", headers=ADMIN)).status_code == 404
        assert (await client.get("/users/mallory/erasure")).status_code == 401
        too_long = await client.get(f"/users/{'x' * 300}/erasure", headers=ADMIN)
        assert too_long.status_code == 422 and "user_id" in too_long.text


async def test_a_replica_with_its_own_cache_stops_serving_an_erased_user(
    pg_database: str, trained_models: Path
) -> None:
    # Two replicas on one database, each with an in-process cache (no Redis).
    base = {"database_url": pg_database, "redis_url": None, "model_dir": trained_models}
    erasing = Settings(**base, admin_key="adm", refresh_interval_s=3600, log_level="ERROR")
    other = Settings(**base, refresh_interval_s=0.1, log_level="ERROR")
    async with running_app(erasing) as first, running_app(other) as second:
        await post_history(first, "ned", ITEMS)
        params = {"user_id": "ned", "model": "mf"}
        assert (await second.get("/recommend", params=params)).json()["fallback"] is None
        cache = second.app.state.cache  # type: ignore[attr-defined]
        assert (await cache.lookup("ned", "mf:v1")).vector is not None
        assert (await first.delete("/users/ned", headers=ADMIN)).json()["events"] == 3
        for _ in range(50):  # the other replica's refresh tick applies the receipt
            if (await cache.lookup("ned", "mf:v1")).vector is None:
                break
            await asyncio.sleep(0.1)
        body = (await second.get("/recommend", params=params)).json()
        assert body["fallback"] == "unknown_user"


async def test_retrain_after_erasure_never_sees_the_users_events(pg_settings: Settings) -> None:
    from tests.app.training.test_retrain import FAST, post_shop

    async with running_app(pg_settings) as client:
        services = client.app.state.services  # type: ignore[attr-defined]
        await post_shop(client, users=60)
        erased = (await client.delete("/users/user-7", headers=ADMIN)).json()
        assert erased["events"] == 12
        # A late delivery from before the erasure is left out; new activity afterwards is not.
        late = events_for("user-7", ["1", "2", "3"])
        await client.post("/events", json=late)
        assert (await client.post("/events", json=late)).status_code == 200
        after = events_for("user-7", ["4"])
        del after["events"][0]["timestamp"]  # server time: after the erasure
        assert (await client.post("/events", json=after)).status_code == 200
        data = await read_events(services.sessionmaker, pg_settings.event_weights)
        pairs = zip(data.users, data.items, strict=True)
        assert [data.item_ids[i] for u, i in pairs if data.user_ids[u] == "user-7"] == ["4"]
        assert len(data) == 59 * 12 + 1
        (outcome,) = await retrain(pg_settings, services.sessionmaker, ["mf"], FAST)
        async with services.sessionmaker() as session:
            (row,) = await repo.model_versions(session=session)
        assert row.event_count == 59 * 12 + 1
        assert "user_ids" not in load_checkpoint(Path(row.path)).meta
        assert outcome.version == row.version


async def test_the_exposure_delete_can_use_the_user_index(pg_database: str) -> None:
    engine = make_engine(pg_database)
    try:
        async with engine.connect() as connection:
            await connection.execute(text("SET enable_seqscan = off"))
            plan = await connection.execute(
                text("EXPLAIN DELETE FROM exposures WHERE user_id = :user"), {"user": "eve"}
            )
            assert "ix_exposures_user" in "\n".join(row[0] for row in plan)
    finally:
        await engine.dispose()
