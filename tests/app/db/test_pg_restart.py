"""Postgres restarted during ingestion: 503 while it is down, recovery without restarting the
app, and every acknowledged event stored. A real server: a throwaway Postgres of this test's
own (initdb into a temporary directory, run as the `postgres` user, on a free port)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest

from app.config import Settings
from app.db.migrate import upgrade
from tests.conftest import free_port, running_app

BIN = next(iter(sorted(Path("/usr/lib/postgresql").glob("*/bin"))), None)


def as_postgres(*command: str) -> None:
    """Run a server command as the postgres user (initdb and postgres refuse root)."""
    prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    subprocess.run([*prefix, *command], check=True, capture_output=True, timeout=120)


class OwnPostgres:
    """A throwaway cluster: start, crash-stop, start again."""

    def __init__(self, directory: Path, port: int) -> None:
        self.directory, self.port = directory, port

    def pg_ctl(self, *args: str) -> None:
        """pg_ctl on this cluster."""
        as_postgres(str(BIN / "pg_ctl"), "-D", str(self.directory / "data"), *args)

    def start(self) -> None:
        """Start and wait until it accepts connections."""
        options = f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1"
        self.pg_ctl("-o", options, "-l", str(self.directory / "log"), "-w", "start")

    def crash(self) -> None:
        """Stop without a shutdown checkpoint: a restart must replay the WAL."""
        self.pg_ctl("-m", "immediate", "-w", "stop")

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"


@pytest.fixture
def own_postgres() -> Iterator[OwnPostgres]:
    """A fresh cluster on a free port, removed afterwards."""
    if BIN is None or not (BIN / "initdb").exists():
        pytest.skip("no PostgreSQL server binaries under /usr/lib/postgresql")
    directory = Path(tempfile.mkdtemp(prefix="recsys-pg-"))
    if os.geteuid() == 0:
        user = pwd.getpwnam("postgres")
        os.chown(directory, user.pw_uid, user.pw_gid)
    as_postgres(
        str(BIN / "initdb"),
        "-D",
        str(directory / "data"),
        "-A",
        "trust",
        "-U",
        "postgres",
        "--no-sync",
    )
    server = OwnPostgres(directory, free_port())
    server.start()
    try:
        yield server
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):  # already stopped
            server.pg_ctl("-m", "immediate", "stop")
        shutil.rmtree(directory, ignore_errors=True)


async def send_until(
    client: httpx.AsyncClient, stop: asyncio.Event, acked: list[str], refused: list[int]
) -> None:
    """POST one event at a time until told to stop; record what was acknowledged."""
    while not stop.is_set():
        event_id = uuid.uuid4().hex
        body = {
            "events": [{"event_id": event_id, "user_id": "pat", "item_id": "sku-1", "type": "view"}]
        }
        response = await client.post("/events", json=body)
        if response.status_code == 200:
            acked.append(event_id)
        else:
            assert response.status_code == 503, response.text
            assert "detail" in response.json()  # a JSON error, not a stack trace
            refused.append(len(acked))
            await asyncio.sleep(0.02)


async def test_postgres_restart_during_ingestion_loses_nothing_acknowledged(
    own_postgres: OwnPostgres, trained_models: Path
) -> None:
    url = own_postgres.dsn.replace("postgresql://", "postgresql+asyncpg://")
    await asyncio.to_thread(upgrade, url)  # Alembic runs its own event loop
    settings = Settings(
        database_url=url,
        redis_url=None,
        model_dir=trained_models,
        log_level="CRITICAL",
        db_connect_timeout_s=1.0,
        refresh_interval_s=3600,
    )
    acked: list[str] = []
    refused: list[int] = []
    async with running_app(settings) as client:
        stop = asyncio.Event()
        sender = asyncio.create_task(send_until(client, stop, acked, refused))
        while len(acked) < 30:
            await asyncio.sleep(0.05)
        await asyncio.to_thread(own_postgres.crash)
        while not refused:  # clients are told to retry while it is down
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)
        before_restart = len(acked)
        await asyncio.to_thread(own_postgres.start)
        for _ in range(300):  # the same app recovers on its own
            if len(acked) >= before_restart + 30:
                break
            await asyncio.sleep(0.05)
        stop.set()
        await sender
        assert len(acked) >= before_restart + 30, "no acknowledgements after the restart"
        assert (await client.get("/readyz")).status_code == 200
    assert refused
    connection = await asyncpg.connect(own_postgres.dsn, timeout=5)
    try:
        stored = {r[0] for r in await connection.fetch("SELECT event_id FROM events")}
    finally:
        await connection.close()
    assert set(acked) <= stored, f"{len(set(acked) - stored)} acknowledged events lost"
