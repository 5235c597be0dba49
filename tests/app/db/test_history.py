"""The hot path's history read: same answer on both databases, survives a Postgres that dropped
its connections, fails fast when Postgres is unreachable."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from app.config import Settings
from app.db import repo
from app.db.history import HistoryReader
from app.db.session import make_engine, make_sessionmaker
from tests.conftest import free_port


async def _seed(settings: Settings, user_id: str, items: list[str]) -> None:
    engine = make_engine(settings.database_url)
    start = datetime(2024, 1, 1, tzinfo=UTC)
    columns = repo.EventColumns(
        event_id=[f"{user_id}-{n}" for n in range(len(items))],
        user_id=[user_id] * len(items),
        item_id=items,
        type=["view"] * len(items),
        value=[None] * len(items),
        event_time=[start + timedelta(minutes=n) for n in range(len(items))],
        recommendation_id=[None] * len(items),
    )
    async with make_sessionmaker(engine)() as session:
        await repo.insert_events(session=session, events=columns)
        await session.commit()
    await engine.dispose()


async def _reader(url: str) -> HistoryReader:
    reader = HistoryReader(make_engine(url), connect_timeout_s=2, pool_size=2)
    await reader.start()
    return reader


async def test_latest_items_oldest_first(settings: Settings) -> None:
    await _seed(settings, "h1", [f"i{n}" for n in range(10)])
    reader = await _reader(settings.database_url)
    try:
        assert await reader("h1", 4) == ["i6", "i7", "i8", "i9"]
        assert await reader("nobody", 4) == []
    finally:
        await reader.close()
        await reader.engine.dispose()


async def test_postgres_dropping_connections_costs_no_request(pg_database: str) -> None:
    settings = Settings(database_url=pg_database)
    await _seed(settings, "h2", ["a", "b"])
    reader = await _reader(pg_database)
    try:
        assert await reader("h2", 10) == ["a", "b"]  # the pool now holds a connection
        admin = await asyncpg.connect(pg_database.replace("+asyncpg", ""))
        try:  # what a Postgres restart does to every open connection
            await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        finally:
            await admin.close()
        assert await reader("h2", 10) == ["a", "b"]
    finally:
        await reader.close()
        await reader.engine.dispose()


async def test_unreachable_postgres_fails_fast() -> None:
    url = f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/nothing"
    reader = await _reader(url)  # connects lazily: starting works
    started = time.perf_counter()
    with pytest.raises(OSError):
        await reader("h3", 10)
    assert time.perf_counter() - started < 3
    await reader.close()
