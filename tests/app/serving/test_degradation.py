"""Faults while serving: Redis dies mid-test, a corrupt checkpoint arrives, a new one swaps in."""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

from app.config import Settings
from tests.app.serving_fixtures import copy_models, ids, post_history
from tests.conftest import running_app


def own_redis_settings(url: str, pg_database: str, models: Path, **extra: Any) -> Settings:
    """Postgres and a throwaway Redis, serving the trained checkpoints."""
    return Settings(
        database_url=pg_database,
        redis_url=url,
        model_dir=models,
        redis_prefix=f"t{uuid.uuid4().hex[:6]}:",
        log_level="ERROR",
        **extra,
    )


async def test_redis_stopped_mid_test_degrades_not_fails(
    own_redis: tuple[str, subprocess.Popen[bytes]], pg_database: str, trained_models: Path
) -> None:
    url, server = own_redis
    settings = own_redis_settings(url, pg_database, trained_models)
    async with running_app(settings) as client:
        await post_history(client, "zed", ["sku-1", "sku-2", "sku-3"])
        before = ids(await client.get("/recommend", params={"user_id": "zed", "model": "mf"}))
        assert (await client.get("/readyz")).json()["cache"] == "ok"
        server.kill()
        server.wait()
        after = await client.get("/recommend", params={"user_id": "zed", "model": "mf"})
        assert ids(after) == before  # recomputed from the database, same answer
        await post_history(client, "zed", [before[0]])  # ingestion still acknowledges
        assert before[0] not in ids(
            await client.get("/recommend", params={"user_id": "zed", "model": "mf"})
        )
        ready = await client.get("/readyz")
        assert ready.status_code == 200 and ready.json()["cache"] == "degraded"
        assert "recsys_cache_errors_total" in (await client.get("/metrics")).text


async def test_redis_blocked_mid_test_costs_one_timeout_not_one_per_request(
    own_redis: tuple[str, subprocess.Popen[bytes]], pg_database: str, trained_models: Path
) -> None:
    url, server = own_redis
    settings = own_redis_settings(url, pg_database, trained_models, cache_timeout_s=0.2)
    async with running_app(settings) as client:
        await post_history(client, "zoe", ["sku-1", "sku-2", "sku-3"])
        params = {"user_id": "zoe", "model": "mf"}
        before = ids(await client.get("/recommend", params=params))
        server.send_signal(signal.SIGSTOP)  # blocked, not closed: only timeouts tell
        try:
            started = time.perf_counter()
            for _ in range(6):
                assert ids(await client.get("/recommend", params=params)) == before
            # A lookup and a store per request would wait 6 x 2 x 0.2 s without the pause.
            assert time.perf_counter() - started < 1.2
        finally:
            server.send_signal(signal.SIGCONT)


async def test_corrupt_checkpoint_is_refused_and_old_keeps_serving(
    serving_settings: Settings, trained_models: Path, tmp_path: Path
) -> None:
    serving_settings.model_dir = copy_models(trained_models, tmp_path / "models")
    serving_settings.admin_key = "adm"
    admin = {"X-API-Key": "adm"}
    async with running_app(serving_settings) as client:
        await post_history(client, "ann", ["sku-1", "sku-2"])
        assert (await client.post("/models/reload")).status_code == 401
        broken = serving_settings.model_dir / "mf" / "v2"
        shutil.copytree(serving_settings.model_dir / "mf" / "v1", broken)
        weights = broken / "weights.safetensors"
        weights.write_bytes(weights.read_bytes()[:100])
        result = (await client.post("/models/reload", headers=admin)).json()
        assert "mf" in result["errors"] and "sha256" in result["errors"]["mf"]
        body = (await client.get("/recommend", params={"user_id": "ann", "model": "mf"})).json()
        assert body["model_version"] == "v1" and len(body["items"]) == 10
        assert "mf" in (await client.get("/models")).json()["errors"]


async def test_new_version_swaps_in_with_its_own_cached_vectors(
    serving_settings: Settings, trained_models: Path, tmp_path: Path
) -> None:
    serving_settings.model_dir = copy_models(trained_models, tmp_path / "models")
    async with running_app(serving_settings) as client:
        cache = client.app.state.cache  # type: ignore[attr-defined]
        await post_history(client, "bea", ["sku-1", "sku-2"])
        await client.get("/recommend", params={"user_id": "bea", "model": "sasrec"})
        assert (await cache.lookup("bea", "sasrec:v1")).vector is not None
        shutil.copytree(
            serving_settings.model_dir / "sasrec" / "v1",
            serving_settings.model_dir / "sasrec" / "v2",
        )
        assert (await client.post("/models/reload")).json()["loaded"]["sasrec"] == "v2"
        body = (await client.get("/recommend", params={"user_id": "bea", "model": "sasrec"})).json()
        assert body["model_version"] == "v2"
        assert (await cache.lookup("bea", "sasrec:v2")).vector is not None
