"""Shared fixtures: a throwaway Postgres database and Redis key prefix per run, real servers."""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import redis

from app.config import Settings
from app.db.migrate import upgrade
from app.main import create_app

# Apps built in tests must not change the torch threads of the tests that train models.
os.environ.setdefault("RECSYS_TORCH_THREADS", "0")
PG_ADMIN_DSN = os.environ.get("RECSYS_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("RECSYS_TEST_REDIS", "redis://127.0.0.1:6379/0")
RUN_ID = uuid.uuid4().hex[:10]


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def asyncpg_to_sqlalchemy(dsn: str) -> str:
    """postgresql://... -> postgresql+asyncpg://..."""
    return dsn.replace("postgresql://", "postgresql+asyncpg://", 1)


async def _admin(sql: str) -> None:
    connection = await asyncpg.connect(PG_ADMIN_DSN, timeout=5)
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


@pytest.fixture(scope="session")
def pg_database() -> Any:
    """A fresh, migrated Postgres database for this test run, dropped afterwards."""
    name = f"recsys_test_{RUN_ID}"
    asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    url = asyncpg_to_sqlalchemy(PG_ADMIN_DSN.rsplit("/", 1)[0] + f"/{name}")
    upgrade(url)
    yield url
    asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def redis_prefix() -> Any:
    """A key prefix unique to this run; every key under it is deleted afterwards."""
    prefix = f"recsys-test-{RUN_ID}:"
    yield prefix
    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A migrated SQLite database file for one test."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'recsys.db'}"
    upgrade(url)
    return url


async def _truncate(url: str) -> None:
    connection = await asyncpg.connect(url.replace("+asyncpg", ""), timeout=5)
    try:
        await connection.execute(
            "TRUNCATE events, items, exposures, experiments, model_versions, rules, erasures "
            "RESTART IDENTITY"
        )
    finally:
        await connection.close()


@pytest.fixture(params=["postgres", "sqlite"])
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    """Settings for both deployments: Postgres + Redis, and the embedded default."""
    base: dict[str, Any] = {"model_dir": tmp_path / "models", "log_level": "WARNING"}
    if request.param == "postgres":
        url = request.getfixturevalue("pg_database")
        asyncio.run(_truncate(url))
        prefix = request.getfixturevalue("redis_prefix") + uuid.uuid4().hex[:6] + ":"
        return Settings(database_url=url, redis_url=REDIS_URL, redis_prefix=prefix, **base)
    return Settings(database_url=request.getfixturevalue("sqlite_url"), redis_url=None, **base)


ClientFactory = Callable[..., Awaitable[httpx.AsyncClient]]


@asynccontextmanager
async def running_app(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The app with its lifespan entered, behind an in-process HTTP client."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            client.app = app  # type: ignore[attr-defined]
            yield client


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """A client for the app under the parametrised settings."""
    async with running_app(settings) as http:
        yield http
