"""Both cache backends keep the same semantics (real Redis for one of them)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from app.cache import CacheBackend, LocalCache, RedisCache
from tests.conftest import REDIS_URL


@pytest.fixture(params=["redis", "local"])
async def cache(request: pytest.FixtureRequest, redis_prefix: str) -> AsyncIterator[CacheBackend]:
    """A backend with a history length of 5 and its own key prefix."""
    backend: CacheBackend
    if request.param == "redis":
        prefix = f"{redis_prefix}{uuid.uuid4().hex[:6]}:"
        backend = RedisCache(REDIS_URL, prefix=prefix, history_len=5, ttl_s=60, timeout_s=1)
    else:
        backend = LocalCache(max_users=100, history_len=5, ttl_s=60)
    yield backend
    await backend.drop_users(["a", "b", "c"], history=True)
    await backend.close()


async def test_append_extends_only_cached_histories_and_drops_vectors(cache: CacheBackend) -> None:
    await cache.set_history("a", ["1", "2"])
    await cache.set_vector("a", "mf:v1", b"vec")
    await cache.set_vector("b", "mf:v1", b"vec")
    await cache.append_history({"a": ["3"], "b": ["9"]})
    assert await cache.get_history("a") == ["1", "2", "3"]
    assert await cache.get_history("b") is None  # not cached: it reloads from the database
    assert await cache.get_vector("a", "mf:v1") is None
    assert await cache.get_vector("b", "mf:v1") is None


async def test_histories_are_capped_even_for_huge_batches(cache: CacheBackend) -> None:
    await cache.set_history("c", ["0"])
    await cache.append_history({"c": [str(n) for n in range(1, 2501)]})  # > Lua's unpack slice
    assert await cache.get_history("c") == ["2496", "2497", "2498", "2499", "2500"]


async def test_vectors_are_per_model_version(cache: CacheBackend) -> None:
    await cache.set_vector("a", "mf:v1", b"one")
    await cache.set_vector("a", "mf:v2", b"two")
    assert await cache.get_vector("a", "mf:v1") == b"one"
    assert await cache.get_vector("a", "mf:v2") == b"two"
    assert await cache.get_vector("a", "sasrec:v1") is None
    await cache.drop_users(["a"])
    assert await cache.get_vector("a", "mf:v2") is None
