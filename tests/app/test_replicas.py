"""Two service processes on one Postgres database and one Redis prefix behave as one service:
read-your-writes across replicas, promotions and experiments reach both."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.db import repo
from app.db.session import make_engine, make_sessionmaker
from app.db.tables import ModelVersion
from tests.app.serving_fixtures import events_for
from tests.conftest import REDIS_URL, _truncate, free_port

ROOT = Path(__file__).resolve().parents[2]
ARMS = {
    "arms": [
        {"name": "a", "model": "mf", "weight": 1},
        {"name": "b", "model": "sasrec", "weight": 1},
    ]
}


def start_replica(env: dict[str, str], log: Path) -> tuple[str, subprocess.Popen[bytes]]:
    """One uvicorn process serving the app on a free port; its base URL."""
    port = free_port()
    command = [sys.executable, "-m", "uvicorn", "app.main:create_app", "--factory"]
    command += ["--port", str(port), "--no-access-log", "--log-level", "warning"]
    clean = {k: v for k, v in os.environ.items() if not k.startswith("RECSYS_")}
    with log.open("wb") as out:
        process = subprocess.Popen(command, env={**clean, **env}, cwd=ROOT, stdout=out, stderr=out)
    return f"http://127.0.0.1:{port}", process


def wait_ready(base: str, process: subprocess.Popen[bytes], log: Path) -> None:
    """Until /readyz answers 200 (fails with the replica's log when it exits or hangs)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text()[-3000:]
        try:
            if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    pytest.fail(f"replica {base} not ready:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def replica_env(
    pg_database: str,
    redis_prefix: str,
    trained_models: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, str]:
    """One database (emptied), one Redis prefix, a private copy of the checkpoints."""
    asyncio.run(_truncate(pg_database))
    models = tmp_path_factory.mktemp("replicas") / "models"
    shutil.copytree(trained_models, models)
    return {
        "RECSYS_DATABASE_URL": pg_database,
        "RECSYS_REDIS_URL": REDIS_URL,
        "RECSYS_REDIS_PREFIX": f"{redis_prefix}{uuid.uuid4().hex[:6]}:",
        "RECSYS_MODEL_DIR": str(models),
        "RECSYS_REFRESH_INTERVAL_S": "0.5",
        "RECSYS_ENCODE_CATALOG": "false",
        "RECSYS_TORCH_THREADS": "1",
        "RECSYS_LOG_LEVEL": "WARNING",
    }


@pytest.fixture(scope="module")
def replicas(
    replica_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, str]]:
    """Two replicas (A, B) of the service, started together, stopped after the module."""
    logs = tmp_path_factory.mktemp("replica-logs")
    started = [start_replica(replica_env, logs / f"replica-{n}.log") for n in range(2)]
    try:
        for n, (base, process) in enumerate(started):
            wait_ready(base, process, logs / f"replica-{n}.log")
        yield started[0][0], started[1][0]
    finally:
        for _, process in started:
            process.terminate()
        for _, process in started:
            process.wait(timeout=30)


def eventually(check: Callable[[], Any], seconds: float = 10) -> Any:
    """The first truthy result of `check`, polled until the deadline."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.2)
    pytest.fail("not reached in time")


def recommend(base: str, user: str, **params: Any) -> dict[str, Any]:
    """A /recommend answer."""
    response = httpx.get(f"{base}/recommend", params={"user_id": user, **params}, timeout=10)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def promote_copy(database_url: str, source: Path, target: Path) -> None:
    """Register `target` (a copy of `source`) as mf's new version and make it active, as
    `recsys models promote` does; outside the model directory, so only the row serves it."""
    shutil.copytree(source, target)
    engine = make_engine(database_url, pool=False)
    try:
        async with make_sessionmaker(engine)() as session:
            row = ModelVersion(model_name="mf", version=target.name, path=str(target), metrics={})
            await repo.add_model_version(session=session, row=row)
            await repo.activate_version(session=session, version=row)
    finally:
        await engine.dispose()


def test_an_event_on_a_is_masked_on_b(replicas: tuple[str, str]) -> None:
    a, b = replicas
    post = httpx.post(f"{a}/events", json=events_for("ann", ["sku-0", "sku-1", "sku-2"]))
    assert post.status_code == 200
    first = [i["item_id"] for i in recommend(b, "ann", model="mf")["items"]]
    assert first and not {"sku-0", "sku-1", "sku-2"} & set(first)
    hits = lookups(b, "hit")
    assert recommend(b, "ann", model="mf")["items"][0]["item_id"] == first[0]
    assert lookups(b, "hit") == hits + 1  # B answers from the state in the shared cache
    assert httpx.post(f"{a}/events", json=events_for("ann", [first[0]])).status_code == 200
    misses = lookups(b, "miss")
    after = [i["item_id"] for i in recommend(b, "ann", model="mf")["items"]]
    assert first[0] not in after
    assert lookups(b, "miss") == misses + 1  # A's event dropped the state B had cached


def lookups(base: str, result: str) -> float:
    """The replica's cache lookups with this result so far (its /metrics)."""
    text = httpx.get(f"{base}/metrics", timeout=10).text
    line = f'recsys_cache_lookups_total{{result="{result}"}} '
    found = [row for row in text.splitlines() if row.startswith(line)]
    return float(found[0].split()[-1]) if found else 0.0


def test_a_promotion_through_a_is_served_by_b(
    replicas: tuple[str, str], replica_env: dict[str, str], tmp_path: Path
) -> None:
    a, b = replicas
    httpx.post(f"{a}/events", json=events_for("ann", ["sku-0", "sku-1"]))
    assert recommend(b, "ann", model="mf")["model_version"] == "v1"
    source = Path(replica_env["RECSYS_MODEL_DIR"]) / "mf" / "v1"
    asyncio.run(promote_copy(replica_env["RECSYS_DATABASE_URL"], source, tmp_path / "mf-v2"))
    reloaded = httpx.post(f"{a}/models/reload", timeout=30).json()
    assert reloaded["loaded"]["mf"] == "mf-v2"
    warmup = reloaded["warmup"]["mf"]  # ann's state for the new version: A's, or B's (cached)
    assert warmup["version"] == "mf-v2" and warmup["warmed"] + warmup["cached"] == 1
    eventually(lambda: recommend(b, "ann", model="mf")["model_version"] == "mf-v2")


def test_an_experiment_created_on_a_routes_on_b_with_the_same_arm(
    replicas: tuple[str, str],
) -> None:
    a, b = replicas
    assert httpx.put(f"{a}/experiments/default", json=ARMS).status_code == 200
    users = [f"user-{n}" for n in range(12)]
    on_a = {u: recommend(a, u)["variant"] for u in users}
    assert set(on_a.values()) == {"a", "b"}
    eventually(lambda: recommend(b, users[0]).get("experiment") == "default")
    assert {u: recommend(b, u)["variant"] for u in users} == on_a
