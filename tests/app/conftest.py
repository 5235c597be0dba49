"""Serving fixtures: checkpoints trained once per run, settings that serve them."""

from __future__ import annotations

import asyncio
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from app.config import Settings
from tests.app.serving_fixtures import train_tiny_models
from tests.conftest import REDIS_URL, _truncate, free_port


@pytest.fixture(scope="session")
def trained_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """popularity, mf and sasrec checkpoints on generated data (read-only for tests)."""
    return train_tiny_models(tmp_path_factory.mktemp("models"))


@pytest.fixture
def serving_settings(settings: Settings, trained_models: Path) -> Settings:
    """The parametrised deployment, serving the trained checkpoints."""
    settings.model_dir = trained_models
    settings.refresh_interval_s = 3600  # tests trigger refreshes themselves
    return settings


def start_redis(directory: Path, *extra: str) -> tuple[str, subprocess.Popen[bytes]]:
    """A throwaway redis-server on its own port (never the shared one), answering pings."""
    port = free_port()
    command = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
    command += ["--appendonly", "no", "--dir", str(directory), *extra]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    password = extra[extra.index("--requirepass") + 1] if "--requirepass" in extra else None
    for _ in range(100):
        try:
            redis.Redis(port=port, password=password).ping()
            break
        except redis.ConnectionError:
            time.sleep(0.05)
    return url, server


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A throwaway redis-server, killed afterwards (resumed first if a test stopped it)."""
    url, server = start_redis(tmp_path)
    yield url, server
    server.kill()
    server.wait()


@pytest.fixture
def pg_settings(pg_database: str, redis_prefix: str, tmp_path: Path) -> Settings:
    """Postgres + Redis settings with an empty model directory and a clean database."""
    asyncio.run(_truncate(pg_database))
    return Settings(
        database_url=pg_database,
        redis_url=REDIS_URL,
        model_dir=tmp_path / "models",
        redis_prefix=f"{redis_prefix}{uuid.uuid4().hex[:6]}:",
        log_level="WARNING",
        refresh_interval_s=3600,
    )
