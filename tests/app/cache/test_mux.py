"""The shared, pipelined Redis connection of the hot path, against real redis-servers."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from app.cache import MISS, RedisCache, SafeCache
from app.cache.mux import MuxConnection, supported
from tests.app.conftest import start_redis
from tests.conftest import REDIS_URL, free_port

ECHO = "return {KEYS[1], ARGV[1], redis.call('GET', KEYS[1]) or ''}"


@pytest.fixture
async def shared() -> AsyncIterator[tuple[MuxConnection, str]]:
    """A connection to the shared test Redis and a key prefix cleaned up afterwards."""
    mux, prefix = MuxConnection(REDIS_URL, timeout_s=2.0), f"mux{uuid.uuid4().hex[:8]}:"
    yield mux, prefix
    await mux.close()
    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(match=f"{prefix}*"))
    if keys:
        client.delete(*keys)


async def test_concurrent_calls_each_get_their_own_reply(
    shared: tuple[MuxConnection, str],
) -> None:
    mux, prefix = shared
    redis.Redis.from_url(REDIS_URL).mset({f"{prefix}{n}": f"v{n}" for n in range(300)})
    sha = mux.register(ECHO)
    replies = await asyncio.gather(*(mux.evalsha(sha, [f"{prefix}{n}"], [n]) for n in range(300)))
    assert replies == [
        [f"{prefix}{n}".encode(), str(n).encode(), f"v{n}".encode()] for n in range(300)
    ]


async def test_commands_of_one_loop_iteration_share_one_socket_write(
    shared: tuple[MuxConnection, str],
) -> None:
    mux, prefix = shared
    sha = mux.register(ECHO)
    await mux.evalsha(sha, [f"{prefix}warm"], [0])  # connected, script loaded
    protocol = mux._protocol
    assert protocol is not None and protocol.transport is not None
    writes: list[bytes] = []
    write = protocol.transport.write

    def counted(data: bytes) -> None:
        writes.append(data)
        write(data)

    protocol.transport.write = counted  # type: ignore[method-assign]
    replies = await asyncio.gather(*(mux.evalsha(sha, [f"{prefix}{n}"], [n]) for n in range(50)))
    assert [r[1] for r in replies] == [str(n).encode() for n in range(50)]
    assert len(writes) == 1 and writes[0].count(b"EVALSHA") == 50


async def test_a_script_redis_forgot_is_loaded_again(
    own_redis: tuple[str, subprocess.Popen[bytes]],
) -> None:
    url, _ = own_redis
    mux = MuxConnection(url, timeout_s=2.0)
    sha = mux.register(ECHO)
    assert (await mux.evalsha(sha, ["k"], ["a"]))[1] == b"a"
    redis.Redis.from_url(url).script_flush()  # as after a restart
    assert (await mux.evalsha(sha, ["k"], ["b"]))[1] == b"b"
    await mux.close()


async def test_errors_are_redis_errors_and_the_connection_survives(
    shared: tuple[MuxConnection, str],
) -> None:
    mux, prefix = shared
    redis.Redis.from_url(REDIS_URL).mset({f"{prefix}text": "abc", f"{prefix}n": 1})
    incr = mux.register("return redis.call('INCR', KEYS[1])")
    with pytest.raises(ResponseError, match="not an integer"):
        await mux.evalsha(incr, [f"{prefix}text"], [])
    assert await mux.evalsha(incr, [f"{prefix}n"], []) == 2


async def test_a_stopped_redis_times_out_and_the_connection_recovers(
    own_redis: tuple[str, subprocess.Popen[bytes]],
) -> None:
    url, server = own_redis
    mux = MuxConnection(url, timeout_s=0.2, retry_after_s=0.5)
    sha = mux.register(ECHO)
    assert (await mux.evalsha(sha, ["k"], [1]))[1] == b"1"
    server.send_signal(signal.SIGSTOP)  # blocked: the socket stays open, no reply comes
    try:
        started = time.perf_counter()
        results = await asyncio.gather(
            *(mux.evalsha(sha, ["k"], [n]) for n in range(5)), return_exceptions=True
        )
        assert time.perf_counter() - started < 1.0
        assert all(isinstance(r, RedisTimeoutError | RedisConnectionError) for r in results)
        started = time.perf_counter()
        with pytest.raises(RedisConnectionError):  # right after a failure: no second timeout
            await mux.evalsha(sha, ["k"], [6])
        assert time.perf_counter() - started < 0.05
    finally:
        server.send_signal(signal.SIGCONT)
    await asyncio.sleep(0.5)
    assert (await mux.evalsha(sha, ["k"], [7]))[1] == b"7"  # a fresh connection
    await mux.close()


async def test_a_killed_connection_is_replaced(shared: tuple[MuxConnection, str]) -> None:
    mux, prefix = shared
    sha = mux.register(ECHO)
    assert (await mux.evalsha(sha, [prefix], [1]))[1] == b"1"
    admin = redis.Redis.from_url(REDIS_URL)
    for client in admin.client_list():
        if client["cmd"] == "evalsha":  # ours: the last command it ran
            admin.client_kill_filter(_id=client["id"])
    await asyncio.sleep(0.05)
    assert (await mux.evalsha(sha, [prefix], [2]))[1] == b"2"


async def test_unreachable_redis_fails_fast() -> None:
    mux = MuxConnection(f"redis://127.0.0.1:{free_port()}/0", timeout_s=1.0)
    started = time.perf_counter()
    for _ in range(3):
        with pytest.raises(RedisConnectionError):
            await mux.evalsha(mux.register(ECHO), ["k"], [1])
    assert time.perf_counter() - started < 0.5


async def test_password_and_database_from_the_url(tmp_path: Path) -> None:
    url, server = start_redis(tmp_path, "--requirepass", "s3cret")
    port = url.rsplit(":", 1)[1].split("/")[0]
    try:
        mux = MuxConnection(f"redis://:s3cret@127.0.0.1:{port}/3", timeout_s=2.0)
        await mux.evalsha(mux.register("return redis.call('SET', KEYS[1], ARGV[1])"), ["k"], ["x"])
        assert redis.Redis(port=int(port), password="s3cret", db=3).get("k") == b"x"
        await mux.close()
        wrong = MuxConnection(f"redis://:nope@127.0.0.1:{port}/0", timeout_s=2.0)
        with pytest.raises(ResponseError):  # refused: the reason, once
            await wrong.evalsha(wrong.register(ECHO), ["k"], [1])
        with pytest.raises(RedisConnectionError):  # then no new connection for a while
            await wrong.evalsha(wrong.register(ECHO), ["k"], [1])
    finally:
        server.kill()
        server.wait()


def test_tls_urls_stay_on_redis_py() -> None:
    assert supported("redis://h:1/0") and supported("unix:///tmp/r.sock")
    assert not supported("rediss://h:1/0")


async def test_cache_lookups_miss_while_redis_is_stopped(
    own_redis: tuple[str, subprocess.Popen[bytes]],
) -> None:
    url, server = own_redis
    errors: list[str] = []
    cache = SafeCache(
        RedisCache(url, prefix="t:", history_len=10, ttl_s=60, timeout_s=0.2),
        on_error=errors.append,
    )
    backend = cache.backend
    assert isinstance(backend, RedisCache) and backend.mux is not None
    backend.mux.retry_after_s = 0.3
    seen = await cache.lookup("u", "mf:v1")
    assert await cache.store(seen, b"vec", ["a"])
    server.send_signal(signal.SIGSTOP)
    try:
        assert await cache.lookup("u", "mf:v1") is MISS
        assert errors == ["lookup"]
    finally:
        server.send_signal(signal.SIGCONT)
    await asyncio.sleep(0.3)
    assert (await cache.lookup("u", "mf:v1")).vector == b"vec"
    await cache.close()
