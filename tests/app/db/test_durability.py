"""The embedded SQLite default commits durably: every connection of the service runs FULL."""

from __future__ import annotations

import asyncio

from sqlalchemy import text

from app.config import Settings
from tests.conftest import running_app

FULL = 2  # PRAGMA synchronous: 0 OFF, 1 NORMAL, 2 FULL, 3 EXTRA


async def test_every_sqlite_connection_of_the_service_syncs_each_commit(sqlite_url: str) -> None:
    settings = Settings(database_url=sqlite_url, redis_url=None, log_level="WARNING")
    async with running_app(settings) as client:
        sessions = client.app.state.sessionmaker  # type: ignore[attr-defined]

        async def pragmas() -> tuple[int, str]:
            async with sessions() as session:
                synchronous = (await session.execute(text("PRAGMA synchronous"))).scalar_one()
                journal = (await session.execute(text("PRAGMA journal_mode"))).scalar_one()
                await asyncio.sleep(0.05)  # held open, so the others need connections of their own
                return int(synchronous), str(journal)

        # Several at once: the pool opens new connections, each must get the pragmas.
        assert set(await asyncio.gather(*(pragmas() for _ in range(4)))) == {(FULL, "wal")}
        response = await client.post(
            "/events", json={"events": [{"user_id": "u", "item_id": "i", "type": "view"}]}
        )
        assert response.status_code == 200, response.text
