"""Read-your-writes through a Redis blip: an event acknowledged while Redis cannot be reached
must not be followed by the state built before it, once Redis is back (app.cache.fence)."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
import uuid
from pathlib import Path
from subprocess import DEVNULL

import pytest
import redis

from app.config import Settings
from tests.app.conftest import start_redis
from tests.app.serving.test_degradation import own_redis_settings
from tests.app.serving_fixtures import events_for, ids

PERSISTENT = ("--appendonly", "yes", "--appendfsync", "always")  # comes back with its data


def restart(directory: Path, port: int) -> subprocess.Popen[bytes]:
    """The same server again, on the same port, with the data it had (AOF)."""
    command = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
    again = subprocess.Popen([*command, "--dir", str(directory), *PERSISTENT], stdout=DEVNULL)
    for _ in range(100):
        try:
            redis.Redis(port=port, socket_connect_timeout=0.2).ping()
            break
        except redis.ConnectionError:
            time.sleep(0.05)
    return again


@pytest.mark.parametrize("blip", ["restart", "pause"])
async def test_no_state_from_before_an_event_acknowledged_during_a_blip(
    blip: str, pg_database: str, trained_models: Path, tmp_path: Path
) -> None:
    from tests.conftest import running_app

    url, server = start_redis(tmp_path, *PERSISTENT)
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    settings: Settings = own_redis_settings(url, pg_database, trained_models, cache_timeout_s=0.5)
    try:
        async with running_app(settings) as client:
            cache = client.app.state.cache  # type: ignore[attr-defined]
            # pg_database is the run's shared database: a user no other test has written to.
            user = f"rex-{uuid.uuid4().hex[:8]}"
            await client.post("/events", json=events_for(user, ["sku-1", "sku-2", "sku-3"]))
            params = {"user_id": user, "model": "mf"}
            field = client.app.state.services.registry.models["mf"].cache_field  # type: ignore[attr-defined]
            before = ids(await client.get("/recommend", params=params))
            # On a loaded machine a store can miss the cache timeout: ask again until it lands.
            for _ in range(10):
                if (await cache.lookup(user, field)).vector is not None:
                    break
                await client.get("/recommend", params=params)
            assert (await cache.lookup(user, field)).vector is not None  # the state to go
            if blip == "restart":
                server.kill()  # unreachable: the invalidation is lost, not merely late
                server.wait()
            else:
                server.send_signal(signal.SIGSTOP)  # blocked: only timeouts tell
            event = events_for(user, [before[0]])
            del event["events"][0]["timestamp"]  # now: the newest event
            acknowledged = await client.post("/events", json=event)
            assert acknowledged.status_code == 200, acknowledged.text
            if blip == "restart":
                server = restart(tmp_path, port)
            else:
                server.send_signal(signal.SIGCONT)
            redis.Redis(port=port).ping()
            # Past the connection's fail-fast pause: this /recommend really reads Redis.
            await asyncio.sleep(1.2)
            after = ids(await client.get("/recommend", params=params))
            assert before[0] not in after  # the acknowledged event is seen: its item masked
            assert not cache.fence.pending  # replayed once Redis answered
            assert (await cache.lookup(user, field)).vector is not None  # cached again
            assert before[0] not in ids(await client.get("/recommend", params=params))
    finally:
        server.send_signal(signal.SIGCONT)
        server.kill()
        server.wait()
