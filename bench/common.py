"""Helpers shared by the benchmarks: throwaway databases, a real server process, result files."""

from __future__ import annotations

import asyncio
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
PG_ADMIN_DSN = os.environ.get("RECSYS_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
BENCH_REDIS_URL = os.environ.get("RECSYS_BENCH_REDIS", "redis://127.0.0.1:6379/0")


def service_env(dsn: str, model_dir: Path, **settings: str) -> dict[str, str]:
    """A benchmarked service's settings: its database (an asyncpg DSN), Redis, model directory,
    no catalog encoding (MiniLM over the catalog is its own job) and warnings-only logs;
    `settings` adds more, by field name (`warm_seconds="5"` is RECSYS_WARM_SECONDS)."""
    return {
        "RECSYS_DATABASE_URL": dsn.replace("postgresql://", "postgresql+asyncpg://", 1),
        "RECSYS_REDIS_URL": BENCH_REDIS_URL,
        "RECSYS_MODEL_DIR": str(model_dir),
        "RECSYS_ENCODE_CATALOG": "false",
        "RECSYS_LOG_LEVEL": "WARNING",
        **{f"RECSYS_{name.upper()}": value for name, value in settings.items()},
    }


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _admin(sql: str) -> None:
    connection = await asyncpg.connect(PG_ADMIN_DSN)
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


@contextmanager
def throwaway_postgres() -> Iterator[str]:
    """A fresh migrated database (asyncpg DSN), dropped afterwards."""
    from app.db.migrate import upgrade

    name = f"recsys_bench_{uuid.uuid4().hex[:8]}"
    asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    dsn = PG_ADMIN_DSN.rsplit("/", 1)[0] + f"/{name}"
    try:
        upgrade(dsn.replace("postgresql://", "postgresql+asyncpg://", 1))
        yield dsn
    finally:
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@contextmanager
def server(env: dict[str, str], *, workers: int = 1) -> Iterator[str]:
    """`recsys serve` in its own process; yields its base URL."""
    with served(env, workers=workers) as (base, _):
        yield base


@contextmanager
def served(
    env: dict[str, str], *, workers: int = 1, ready_seconds: float = 120
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """`recsys serve` in its own process; yields its base URL and the process (ready within
    `ready_seconds`: loading a large catalog's models and indexes takes minutes)."""
    port = free_port()
    clean = {k: v for k, v in os.environ.items() if not k.startswith("RECSYS_")}
    log = tempfile.NamedTemporaryFile(  # noqa: SIM115 - closed in the finally below
        "w", prefix=f"recsys-server-{port}-", suffix=".log", delete=False
    )

    command = [
        str(Path(sys.executable).with_name("recsys")),
        "serve",
        "--port",
        str(port),
        "--workers",
        str(workers),
    ]
    process = subprocess.Popen(command, env={**clean, **env}, stdout=log, stderr=log, cwd=ROOT)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(base, process, ready_seconds)
        yield base, process
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()
        Path(log.name).unlink(missing_ok=True)


def _wait_ready(base: str, process: subprocess.Popen[bytes], seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        try:
            if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    raise RuntimeError("server did not become ready")


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def write_result(name: str, payload: dict[str, Any]) -> Path:
    """Write bench/results/<name>.json."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps({"machine": machine(), **payload}, indent=2) + "\n")
    return path


def median(values: list[float]) -> float:
    """The median, for reporting noisy repeated measurements."""
    return float(statistics.median(values))
