"""Both cache backends keep the same semantics (real Redis for one of them)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from app.cache import CacheBackend, LocalCache, RedisCache
from tests.conftest import REDIS_URL


@pytest.fixture(params=["redis", "redis-pool", "local"])
async def cache(request: pytest.FixtureRequest, redis_prefix: str) -> AsyncIterator[CacheBackend]:
    """A backend with a history length of 5 and its own key prefix; "redis-pool" runs the
    per-request scripts on redis-py's pool, as for TLS URLs, instead of the shared connection."""
    backend: CacheBackend
    if request.param.startswith("redis"):
        prefix = f"{redis_prefix}{uuid.uuid4().hex[:6]}:"
        shared = request.param == "redis"
        backend = RedisCache(
            REDIS_URL, prefix=prefix, history_len=5, ttl_s=60, timeout_s=1, shared_connection=shared
        )
    else:
        backend = LocalCache(max_users=100, history_len=5, ttl_s=60)
    yield backend
    await backend.drop_users(["a", "b", "c"], history=True)
    await backend.close()


async def vector(cache: CacheBackend, user_id: str, field: str) -> bytes | None:
    """The cached vector of a user for one model version."""
    return (await cache.lookup(user_id, field)).vector


async def put(
    cache: CacheBackend, user_id: str, field: str, data: bytes | None, history: Any
) -> None:
    """Store a vector (and a history) as a request that read the cache just before would."""
    assert await cache.store(await cache.lookup(user_id, field), data, history)


async def test_append_extends_only_cached_histories_and_drops_vectors(cache: CacheBackend) -> None:
    await put(cache, "a", "mf:v1", b"vec", ["1", "2"])
    await put(cache, "b", "mf:v1", b"vec", None)
    await cache.append_history({"a": ["3"], "b": ["9"]})
    assert await cache.get_history("a") == ["1", "2", "3"]
    assert await cache.get_history("b") is None  # not cached: it reloads from the database
    assert await vector(cache, "a", "mf:v1") is None
    assert await vector(cache, "b", "mf:v1") is None


async def test_histories_are_capped_even_for_huge_batches(cache: CacheBackend) -> None:
    await put(cache, "c", "mf:v1", None, ["0"])
    await cache.append_history({"c": [str(n) for n in range(1, 2501)]})  # > Lua's unpack slice
    assert await cache.get_history("c") == ["2496", "2497", "2498", "2499", "2500"]


async def test_vectors_are_per_model_version(cache: CacheBackend) -> None:
    await put(cache, "a", "mf:v1", b"one", None)
    await put(cache, "a", "mf:v2", b"two", None)
    assert await vector(cache, "a", "mf:v1") == b"one"
    assert await vector(cache, "a", "mf:v2") == b"two"
    assert await vector(cache, "a", "sasrec:v1") is None
    await cache.drop_users(["a"])
    assert await vector(cache, "a", "mf:v2") is None


async def test_lookup_gives_the_vector_else_the_cached_history(cache: CacheBackend) -> None:
    empty = await cache.lookup("a", "mf:v1")
    assert empty.vector is None and empty.history is None
    assert await cache.store(empty, b"vec", ["1", "2"])
    assert (await cache.lookup("a", "mf:v1")).vector == b"vec"
    other = await cache.lookup("a", "sasrec:v1")  # another model: its vector is not there
    assert other.vector is None and other.history == ["1", "2"]


async def test_store_keeps_only_the_newest_history_len_items(cache: CacheBackend) -> None:
    seen = await cache.lookup("c", "mf:v1")
    assert await cache.store(seen, None, [str(n) for n in range(2500)])
    assert (await cache.lookup("c", "mf:v1")).history == ["2495", "2496", "2497", "2498", "2499"]
    assert (await cache.lookup("c", "mf:v1")).vector is None  # a history-only store


async def test_store_is_skipped_when_events_arrived_after_the_lookup(cache: CacheBackend) -> None:
    # A vector built from the history read before an event would hide that event until its TTL.
    seen = await cache.lookup("a", "mf:v1")
    await cache.append_history({"a": ["3"]})
    assert not await cache.store(seen, b"stale", ["1", "2"])
    assert await vector(cache, "a", "mf:v1") is None and await cache.get_history("a") is None
    seen = await cache.lookup("a", "mf:v1")
    await cache.drop_users(["a"])
    assert not await cache.store(seen, b"stale", None)
    assert await cache.store(await cache.lookup("a", "mf:v1"), b"fresh", None)
    assert await vector(cache, "a", "mf:v1") == b"fresh"


async def test_marks_are_cached_changed_in_order_and_erased(cache: CacheBackend) -> None:
    # Marks (app.ingest.meaning bits) travel with the history on a vector miss, in one read.
    seen = await cache.lookup("a", "mf:v1")
    assert seen.marks is None and await cache.get_marks("a") is None
    assert await cache.store(seen, None, ["x"], {"x": 1, "y": 2 | 1 << 15})
    assert (await cache.lookup("a", "mf:v1")).marks == {"x": 1, "y": 2 | 1 << 15}
    # (item, set, clear) in event order: hide x, then a later positive on y lifts its hide.
    changes = {"a": [("x", 1 << 15, 0), ("y", 4, 1 << 15), ("z", 1, 0)], "b": [("q", 1, 0)]}
    await cache.append_history({"a": [], "b": ["q"]}, changes)
    assert await cache.get_marks("a") == {"x": 1 | 1 << 15, "y": 2 | 4, "z": 1}
    assert await cache.get_history("a") == ["x"]  # no input items: the list is unchanged
    assert await cache.get_marks("b") is None  # not cached: it is rebuilt from the database
    assert await cache.store(await cache.lookup("a", "mf:v1"), b"vec", None)
    assert (await cache.lookup("a", "mf:v1")).marks is None  # a hit needs no marks
    await cache.append_history({"a": []}, {})  # a batch of only non-input events still drops
    assert await vector(cache, "a", "mf:v1") is None
    await cache.drop_users(["a"], history=True)
    assert await cache.get_marks("a") is None


async def test_empty_marks_are_cached(cache: CacheBackend) -> None:
    assert await cache.store(await cache.lookup("c", "mf:v1"), None, None, {})
    assert await cache.get_marks("c") == {}
    assert (await cache.lookup("c", "mf:v1")).marks == {}


async def test_the_history_keeps_each_items_event_time(cache: CacheBackend) -> None:
    # SASRec with time gaps reads the times: they travel with the items, capped alike.
    seen = await cache.lookup("a", "mf:v1")
    assert await cache.store(seen, None, ["1", "é 2", '"3"'], None, [100, 160, 160])
    found = await cache.lookup("a", "mf:v1")
    assert (found.history, found.times) == (["1", "é 2", '"3"'], [100, 160, 160])
    await cache.append_history({"a": ["4", "5", "6"]}, None, {"a": [200, 3600, 1_800_000_000]})
    found = await cache.lookup("a", "mf:v1")
    assert found.history == ["é 2", '"3"', "4", "5", "6"]
    assert found.times == [160, 160, 200, 3600, 1_800_000_000]
    assert await cache.get_history("a") == found.history


async def test_a_history_without_times_reads_as_times_unknown(cache: CacheBackend) -> None:
    assert await cache.store(await cache.lookup("a", "mf:v1"), None, ["1", "2"])
    found = await cache.lookup("a", "mf:v1")
    assert found.history == ["1", "2"] and found.times is None
    await cache.store(await cache.lookup("b", "mf:v1"), None, ["1"], None, [5])
    await cache.append_history({"b": ["2"]})  # one item without a time: not all are known
    found = await cache.lookup("b", "mf:v1")
    assert found.history == ["1", "2"] and found.times is None


async def test_a_history_cached_before_times_reloads(redis_prefix: str) -> None:
    # Redis may hold a list of plain ids from before times were cached: a miss, not a crash.
    prefix = f"{redis_prefix}{uuid.uuid4().hex[:6]}:"
    cache = RedisCache(REDIS_URL, prefix=prefix, history_len=5, ttl_s=60, timeout_s=1)
    try:
        await cache.client.rpush(f"{prefix}hist:a", "1", "2")
        found = await cache.lookup("a", "mf:v1")
        assert found.history is None and found.times is None  # read from the database
        assert await cache.get_history("a") == ["1", "2"]  # the ids still read as ids
        await cache.append_history({"a": ["3"]}, None, {"a": [300]})  # old and new mixed
        found = await cache.lookup("a", "mf:v1")
        assert found.history is None
        assert await cache.store(found, None, ["1", "2", "3"], None, [100, 200, 300])
        found = await cache.lookup("a", "mf:v1")
        assert (found.history, found.times) == (["1", "2", "3"], [100, 200, 300])
    finally:
        await cache.drop_users(["a"], history=True)
        await cache.close()
