"""The serving hot path's one query, a user's latest items: on Postgres over a bare asyncpg pool.

Through SQLAlchemy the query cost ~350 us of CPU per cold request, most of it the pool's
pre-ping (its own round trip in a transaction) and statement handling; asyncpg's pool with its
prepared-statement cache answers the same query for a fraction. Elsewhere (SQLite) the query
goes through SQLAlchemy.
"""

from __future__ import annotations

import asyncpg
from sqlalchemy.ext.asyncio import AsyncEngine

from app.db import repo

# What a query on a connection that a restarted Postgres closed raises, depending on when the
# close is noticed: the query is retried once, on a fresh connection.
_STALE = (
    asyncpg.ConnectionDoesNotExistError,
    asyncpg.AdminShutdownError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
)


async def _keep_session(connection: asyncpg.Connection) -> None:
    """Release without asyncpg's default reset query (RESET ALL, UNLISTEN *, ...): a round trip
    per request, and these connections only ever run one read-only SELECT. asyncpg still
    rolls back an open transaction before calling this."""


class HistoryReader:
    """Latest item ids of a user, oldest first."""

    def __init__(self, engine: AsyncEngine, *, connect_timeout_s: float, pool_size: int) -> None:
        self.engine = engine.execution_options(isolation_level="AUTOCOMMIT")  # no BEGIN/ROLLBACK
        self.connect_timeout_s, self.pool_size = connect_timeout_s, pool_size
        self.pool: asyncpg.Pool | None = None

    async def start(self) -> None:
        """Create the asyncpg pool on Postgres; it connects lazily, so a down database only
        fails the requests that need it."""
        url = self.engine.url
        if url.get_backend_name() != "postgresql":
            return
        dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
        self.pool = await asyncpg.create_pool(
            dsn,
            min_size=0,
            max_size=self.pool_size,
            timeout=self.connect_timeout_s,
            command_timeout=60,
            reset=_keep_session,
        )

    async def close(self) -> None:
        """Close the pool."""
        if self.pool is not None:
            await self.pool.close()

    async def __call__(self, user_id: str, limit: int) -> list[str]:
        """The user's latest `limit` item ids, oldest first."""
        if self.pool is None:
            async with self.engine.connect() as connection:
                return await repo.user_history(session=connection, user_id=user_id, limit=limit)
        try:
            return await self._fetch(self.pool, user_id, limit)
        except _STALE:
            return await self._fetch(self.pool, user_id, limit)

    async def _fetch(self, pool: asyncpg.Pool, user_id: str, limit: int) -> list[str]:
        async with pool.acquire(timeout=self.connect_timeout_s) as connection:
            rows = await connection.fetch(repo.PG_USER_HISTORY, user_id, limit)
        return [row[0] for row in reversed(rows)]
