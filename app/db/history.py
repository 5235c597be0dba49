"""The serving hot path's queries, a user's latest items and marks: on Postgres over a bare
asyncpg pool.

Through SQLAlchemy the query cost ~350 us of CPU per cold request, most of it the pool's
pre-ping (its own round trip in a transaction) and statement handling; asyncpg's pool with its
prepared-statement cache answers the same query for a fraction. Elsewhere (SQLite) the query
goes through SQLAlchemy.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.db import repo
from app.domain import EVENT_TYPES, NEGATIVE_TYPES

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


@dataclass(frozen=True)
class UserEvents:
    """What a miss reads: the model-input history with its event times (epoch seconds) and the
    marks' (item, type, value) rows, each None when not asked for."""

    history: list[str] | None
    marks: list[tuple[str, str, float | None]] | None
    times: list[int] | None = None


class HistoryReader:
    """Latest model-input item ids of a user (and their times), oldest first, and the rows of
    their marks."""

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        connect_timeout_s: float,
        pool_size: int,
        input_types: Sequence[str] | None = None,
        negative_max: float = 2.0,
    ) -> None:
        self.engine = engine.execution_options(isolation_level="AUTOCOMMIT")  # no BEGIN/ROLLBACK
        self.connect_timeout_s, self.pool_size = connect_timeout_s, pool_size
        self.pool: asyncpg.Pool | None = None
        # Model input (app.ingest.meaning.input_types / is_input): weighted types, no low ratings.
        self.input_types = list(input_types or [t for t in EVENT_TYPES if t not in NEGATIVE_TYPES])
        self.negative_max = negative_max

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
        """The user's latest `limit` model-input item ids, oldest first."""
        return (await self.read(user_id, limit, marks=False)).history or []

    async def read(
        self, user_id: str, limit: int, *, history: bool = True, marks: bool = True
    ) -> UserEvents:
        """The history and/or the marks' rows, over one connection."""
        if self.pool is None:
            async with self.engine.connect() as connection:
                return await self._read_core(connection, user_id, limit, history, marks)
        try:
            return await self._fetch(self.pool, user_id, limit, history, marks)
        except _STALE:
            return await self._fetch(self.pool, user_id, limit, history, marks)

    async def _read_core(
        self, connection: AsyncConnection, user_id: str, limit: int, history: bool, marks: bool
    ) -> UserEvents:
        """Both reads through SQLAlchemy (SQLite)."""
        inputs = (
            await repo.user_inputs(
                session=connection,
                user_id=user_id,
                limit=limit,
                types=self.input_types,
                negative_max=self.negative_max,
            )
            if history
            else None
        )
        rows = await repo.user_marks(session=connection, user_id=user_id) if marks else None
        if inputs is None:
            return UserEvents(None, rows)
        return UserEvents([i for i, _ in inputs], rows, [t for _, t in inputs])

    async def _fetch(
        self, pool: asyncpg.Pool, user_id: str, limit: int, history: bool, marks: bool
    ) -> UserEvents:
        items: list[str] | None = None
        times: list[int] | None = None
        found: list[Any] | None = None
        async with pool.acquire(timeout=self.connect_timeout_s) as connection:
            if history:
                rows = await connection.fetch(
                    repo.PG_USER_INPUTS, user_id, self.input_types, self.negative_max, limit
                )
                rows.reverse()
                items, times = [row[0] for row in rows], [row[1] for row in rows]
            if marks:
                found = [tuple(row) for row in await connection.fetch(repo.PG_USER_MARKS, user_id)]
        return UserEvents(items, found, times)
