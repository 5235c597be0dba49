"""`make fuzz`: the running service against schemathesis, generated from its own /openapi.json.

Starts the service with demo models (the small generated shop: about 10 s to train), every key
set and the admin key sent, so every operation is reachable; on Postgres + Redis when both
answer (a throwaway database and key prefix, removed afterwards), else on SQLite with the
in-process cache. Then `st run` with at least `--max-examples` cases per operation, checking
that no answer is a server error (and, by default, that answers match their documented
schemas). Every route the app mounts is tested: the list comes from /openapi.json.

    python scripts/fuzz.py --max-examples 1000
    python scripts/fuzz.py --backend sqlite --max-examples 50 -- --include-path /events

Exit status: schemathesis's (0 when nothing failed). The server's log and the reports land in
var/fuzz/.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import asyncpg
import httpx
import redis

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
OUT = ROOT / "var" / "fuzz"
PG_ADMIN_DSN = os.environ.get("RECSYS_FUZZ_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("RECSYS_FUZZ_REDIS", "redis://127.0.0.1:6379/0")
KEYS = {"ADMIN": "fuzz-admin-key", "WRITE": "fuzz-write-key", "READ": "fuzz-read-key"}
KEYS |= {"METRICS": "fuzz-metrics-key"}
CHECKS = "not_a_server_error,response_schema_conformance,content_type_conformance"


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _pg(sql: str) -> None:
    connection = await asyncpg.connect(PG_ADMIN_DSN, timeout=3)
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


def servers_answer() -> bool:
    """Whether the Postgres and Redis servers answer."""
    try:
        asyncio.run(_pg("SELECT 1"))
        redis.Redis.from_url(REDIS_URL, socket_timeout=3).ping()
    except Exception:
        return False
    return True


class Deployment:
    """The database (and cache) one run serves from, made and removed by the run."""

    def __init__(self, backend: str, workdir: Path) -> None:
        self.backend = backend
        self.run_id = uuid.uuid4().hex[:10]
        self.db_name = f"recsys_fuzz_{self.run_id}"
        self.prefix = f"recsys-fuzz-{self.run_id}:"
        if backend == "postgres":
            self.url = PG_ADMIN_DSN.rsplit("/", 1)[0].replace(
                "postgresql://", "postgresql+asyncpg://", 1
            )
            self.url += f"/{self.db_name}"
        else:
            self.url = f"sqlite+aiosqlite:///{workdir / 'recsys.db'}"

    def create(self) -> None:
        """A fresh database, migrated."""
        from app.db.migrate import upgrade

        if self.backend == "postgres":
            asyncio.run(_pg(f'CREATE DATABASE "{self.db_name}"'))
        upgrade(self.url)

    def env(self) -> dict[str, str]:
        """The service's settings for this deployment."""
        if self.backend == "postgres":
            return {"RECSYS_REDIS_URL": REDIS_URL, "RECSYS_REDIS_PREFIX": self.prefix}
        return {}

    def drop(self) -> None:
        """Remove the database and every cache key of the run."""
        if self.backend != "postgres":
            return
        asyncio.run(_pg(f'DROP DATABASE IF EXISTS "{self.db_name}" WITH (FORCE)'))
        client = redis.Redis.from_url(REDIS_URL)
        keys = list(client.scan_iter(match=f"{self.prefix}*", count=1000))
        if keys:
            client.delete(*keys)
        client.close()


def start_service(deployment: Deployment, workdir: Path, port: int) -> subprocess.Popen[bytes]:
    """`recsys serve` with demo models and every key set; its log goes to workdir."""
    empty = workdir / "no-datasets"  # the generated demo shop, not MovieLens: seconds to train
    empty.mkdir(exist_ok=True)
    env = os.environ | deployment.env()
    env |= {f"RECSYS_{name}_KEY": key for name, key in KEYS.items()}
    env |= {
        "RECSYS_DATABASE_URL": deployment.url,
        "RECSYS_MODEL_DIR": str(workdir / "models"),
        "RECSYS_DATA_DIR": str(empty),
        "RECSYS_DEMO_MODELS": "1",
        "RECSYS_LOG_LEVEL": "WARNING",
    }
    log = (workdir / "server.log").open("wb")
    command = [str(BIN / "recsys"), "serve", "--port", str(port)]
    return subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)


def wait_ready(base: str, server: subprocess.Popen[bytes], timeout_s: float) -> None:
    """Until /readyz says ok (database up, models loaded)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"the service exited ({server.returncode}); see {OUT}/server.log")
        try:
            if httpx.get(f"{base}/readyz", timeout=2).json().get("status") == "ok":
                return
        except (httpx.HTTPError, ValueError):
            pass
        time.sleep(1)
    raise SystemExit(f"the service was not ready within {timeout_s:.0f} s")


def schemathesis(base: str, args: argparse.Namespace, extra: list[str]) -> int:
    """`st run` against the service's own schema; its exit status."""
    command = [
        str(BIN / "st"),
        "run",
        f"{base}/openapi.json",
        "--checks",
        args.checks,
        "--max-examples",
        str(args.max_examples),
        "--header",
        f"X-API-Key: {KEYS['ADMIN']}",
        "--workers",
        str(args.workers),
        "--request-timeout",
        "60",
        "--generation-database",
        "none",  # no example store left behind; each run draws afresh (--seed to repeat)
        "--report",
        "junit",
        "--report-dir",
        str(OUT),
        "--no-color",
        *extra,
    ]
    print("$", " ".join(command), flush=True)
    # From var/: schemathesis keeps its replay store (earlier failures, tried first) in
    # ./.schemathesis, which belongs there, ignored by git and kept between runs.
    return subprocess.call(command, cwd=OUT.parent)


def server_errors(log: Path) -> int:
    """Unhandled exceptions in the service's log: a second count of 5xx answers."""
    text = log.read_text(errors="replace")
    return text.count("Exception in ASGI application")


def main() -> int:
    """Parse the options, run the service and schemathesis, clean up."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--max-examples", type=int, default=1000, help="cases per operation")
    parser.add_argument("--backend", choices=["auto", "postgres", "sqlite"], default="auto")
    parser.add_argument("--checks", default=CHECKS, help="schemathesis checks, comma-separated")
    # One worker: schemathesis's threads hit a CPython 3.11.7 bug (ast.parse in two threads:
    # "AST constructor recursion depth mismatch"), and the service has the cores anyway.
    parser.add_argument("--workers", type=int, default=1, help="concurrent schemathesis workers")
    parser.add_argument("--ready-timeout", type=float, default=600, help="seconds to start")
    args, extra = parser.parse_known_args()
    extra = [arg for arg in extra if arg != "--"]
    backend = args.backend
    if backend == "auto":
        backend = "postgres" if servers_answer() else "sqlite"
    shutil.rmtree(OUT, ignore_errors=True)
    OUT.mkdir(parents=True)
    deployment = Deployment(backend, OUT)
    print(f"fuzz: {backend} ({deployment.url}), reports in {OUT}", flush=True)
    deployment.create()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = start_service(deployment, OUT, port)
    started = time.monotonic()
    try:
        wait_ready(base, server, args.ready_timeout)
        print(f"fuzz: service ready in {time.monotonic() - started:.0f} s", flush=True)
        began = time.monotonic()
        status = schemathesis(base, args, extra)
        crashes = server_errors(OUT / "server.log")
        print(
            f"fuzz: {backend}, {args.max_examples} examples per operation, "
            f"{time.monotonic() - began:.0f} s; unhandled exceptions in the service's log: "
            f"{crashes}",
            flush=True,
        )
        return status or int(crashes > 0)
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        deployment.drop()


if __name__ == "__main__":
    sys.exit(main())
