"""The CLI: migrations on both databases, and `recsys serve` as a real server on the default."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from app.db.migrate import downgrade, upgrade
from app.db.tables import Base
from tests.conftest import PG_ADMIN_DSN, asyncpg_to_sqlalchemy, free_port

RECSYS = str(Path(sys.executable).with_name("recsys"))


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without any RECSYS_ setting, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECSYS_")}
    return {**env, **extra}


def run_cli(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """Run `recsys ...` and fail the test with its output when it fails."""
    done = subprocess.run(
        [RECSYS, *args], cwd=cwd, env=clean_env(**env), text=True, capture_output=True, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def test_help_lists_commands(tmp_path: Path) -> None:
    out = run_cli("--help", cwd=tmp_path).stdout
    for command in ("serve", "db"):
        assert command in out


async def _tables(dsn: str) -> set[str]:
    connection = await asyncpg.connect(dsn)
    try:
        rows = await connection.fetch("SELECT tablename FROM pg_tables WHERE schemaname='public'")
        return {r["tablename"] for r in rows}
    finally:
        await connection.close()


@pytest.fixture
def empty_pg() -> Iterator[str]:
    """An empty Postgres database, dropped afterwards."""
    name = f"recsys_cli_{uuid.uuid4().hex[:8]}"

    async def admin(sql: str) -> None:
        connection = await asyncpg.connect(PG_ADMIN_DSN)
        await connection.execute(sql)
        await connection.close()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    yield PG_ADMIN_DSN.rsplit("/", 1)[0] + f"/{name}"
    asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def test_migrations_up_down_up_on_postgres(empty_pg: str, tmp_path: Path) -> None:
    url = asyncpg_to_sqlalchemy(empty_pg)
    run_cli("db", "upgrade", cwd=tmp_path, RECSYS_DATABASE_URL=url)
    assert {"events", "items", "model_versions", "exposures"} <= asyncio.run(_tables(empty_pg))
    run_cli("db", "downgrade", "base", cwd=tmp_path, RECSYS_DATABASE_URL=url)
    assert asyncio.run(_tables(empty_pg)) == {"alembic_version"}
    run_cli("db", "upgrade", cwd=tmp_path, RECSYS_DATABASE_URL=url)


def test_migrations_on_sqlite(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/x.db"
    run_cli("db", "upgrade", cwd=tmp_path, RECSYS_DATABASE_URL=url)
    run_cli("db", "downgrade", "base", cwd=tmp_path, RECSYS_DATABASE_URL=url)
    run_cli("db", "upgrade", cwd=tmp_path, RECSYS_DATABASE_URL=url)


def _query(target: str, sql: str) -> list[tuple[Any, ...]]:
    """Rows of one statement on a SQLite file path or a Postgres DSN."""
    if not target.startswith("postgresql://"):
        with sqlite3.connect(target) as connection:
            return connection.execute(sql).fetchall()

    async def run() -> list[tuple[Any, ...]]:
        connection = await asyncpg.connect(target)
        try:
            return [tuple(row) for row in await connection.fetch(sql)]
        finally:
            await connection.close()

    return asyncio.run(run())


def _item_columns(target: str) -> set[str]:
    """The items table's column names."""
    if target.startswith("postgresql://"):
        sql = "SELECT column_name FROM information_schema.columns WHERE table_name = 'items'"
    else:
        sql = "SELECT name FROM pragma_table_info('items')"
    return {row[0] for row in _query(target, sql)}


@pytest.mark.parametrize("backend", ["postgres", "sqlite"])
def test_catalog_migration_keeps_stored_items(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """0002 adds description, categories (old rows: []) and price; its downgrade drops them."""
    if backend == "postgres":
        target = request.getfixturevalue("empty_pg")
        url = asyncpg_to_sqlalchemy(target)
    else:
        target = str(tmp_path / "x.db")
        url = f"sqlite+aiosqlite:///{target}"
    upgrade(url, "0001")
    _query(
        target,
        "INSERT INTO items (item_id, title, attributes, active) VALUES ('a', 'Mug', '{}', true)",
    )
    new_columns = {"description", "categories", "price"}
    assert not new_columns & _item_columns(target)
    upgrade(url, "0002")
    assert new_columns <= _item_columns(target)
    row = _query(target, "SELECT title, description, categories, price FROM items")[0]
    assert (row[0], row[1], json.loads(row[2]), row[3]) == ("Mug", None, [], None)
    downgrade(url, "0001")
    assert not new_columns & _item_columns(target)
    assert _query(target, "SELECT item_id, title FROM items") == [("a", "Mug")]


def wait_for(url: str, process: subprocess.Popen[str], seconds: float = 60) -> httpx.Response:
    """Poll until the server answers, failing early when it exits."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()[1]
        try:
            return httpx.get(url, timeout=1)
        except httpx.TransportError:
            time.sleep(0.2)
    raise AssertionError(f"{url} did not answer within {seconds}s")


def test_serve_on_the_embedded_default(tmp_path: Path) -> None:
    """What `make run` does, with no database or cache server configured."""
    run_cli("db", "upgrade", cwd=tmp_path)
    assert (tmp_path / "var" / "recsys.db").is_file()
    port = free_port()
    server = subprocess.Popen(
        [RECSYS, "serve", "--port", str(port)],
        cwd=tmp_path,
        env=clean_env(),
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert wait_for(f"http://127.0.0.1:{port}/healthz", server).json() == {"status": "ok"}
        ready = httpx.get(f"http://127.0.0.1:{port}/readyz").json()
        assert (ready["database"], ready["cache"]) == ("ok", "ok")
        posted = httpx.post(
            f"http://127.0.0.1:{port}/events",
            json={"events": [{"user_id": "u", "item_id": "i", "type": "view"}]},
        )
        assert posted.json() == {"accepted": 1, "duplicates": 0}
    finally:
        server.terminate()
        server.wait(timeout=20)


def test_migrations_match_the_tables(empty_pg: str, tmp_path: Path) -> None:
    """Alembic's autogenerate finds nothing to add: the revisions build exactly app/db/tables.py."""
    url = asyncpg_to_sqlalchemy(empty_pg)
    run_cli("db", "upgrade", cwd=tmp_path, RECSYS_DATABASE_URL=url)

    def differences(connection: Connection) -> list[Any]:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, Base.metadata))

    async def run() -> list[Any]:
        engine = create_async_engine(url)
        try:
            async with engine.connect() as connection:
                return await connection.run_sync(differences)
        finally:
            await engine.dispose()

    assert asyncio.run(run()) == []
