"""User-embedding and recent-history cache: Redis, or an in-process LRU on the embedded default.

The cache is an accelerator, never a source of truth: every failure is counted and swallowed so
that a Redis outage degrades latency, not availability.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any, ParamSpec, TypeVar

from app.cache.base import MISS, CacheBackend, Lookup
from app.cache.fence import InvalidationFence
from app.cache.local import LocalCache
from app.cache.redis import RedisCache

__all__ = ["MISS", "CacheBackend", "LocalCache", "Lookup", "RedisCache", "SafeCache", "make_cache"]
log = logging.getLogger(__name__)
P = ParamSpec("P")
T = TypeVar("T")


class SafeCache:
    """Wraps a backend: errors become misses, are counted and logged, never raised."""

    def __init__(self, backend: CacheBackend, *, on_error: Any = None):
        self.backend = backend
        self.kind = backend.kind
        self.on_error = on_error
        self.last_error: str | None = None
        self.fence = InvalidationFence()  # users whose invalidation failed (app.cache.fence)

    def _failed(self, operation: str, error: Exception) -> None:
        self.last_error = f"{type(error).__name__}: {error}"
        log.warning("cache %s failed: %s", operation, self.last_error)
        if self.on_error is not None:
            self.on_error(operation)

    async def call(
        self, operation: Callable[P, Awaitable[T]], *args: P.args, **kwargs: P.kwargs
    ) -> T | None:
        """`operation` (a method of `backend`) called with the arguments; None on an error."""
        try:
            return await operation(*args, **kwargs)
        except Exception as error:
            self._failed(getattr(operation, "__name__", "call"), error)
            return None

    async def status(self) -> str:
        """'ok' or 'degraded' after a live ping."""
        try:
            await self.backend.ping()
        except Exception as error:
            self._failed("ping", error)
            return "degraded"
        return "ok"

    async def lookup(self, user_id: str, field: str) -> Lookup:
        """What the cache holds for the user, or MISS on an error or while the user's state
        may predate their events (app.cache.fence)."""
        if self.fence.pending and not await self.settled(user_id):
            return MISS
        return await self.call(self.backend.lookup, user_id, field) or MISS

    async def store(
        self,
        seen: Lookup,
        vector: bytes | None,
        history: Sequence[str] | None,
        marks: Mapping[str, int] | None = None,
        times: Sequence[int] | None = None,
    ) -> bool:
        """Conditional store; False when skipped, or on an error (counted) or after a MISS."""
        if seen is MISS:  # the cache failed on read: its generation is unknown
            return False
        if self.fence.blocks(seen.user_id):  # its invalidation failed since the read
            return False
        return bool(await self.call(self.backend.store, seen, vector, history, marks, times))

    async def get_history(self, user_id: str) -> list[str] | None:
        """History, or None on a miss or an error (or while it may miss committed events)."""
        if self.fence.pending and not await self.settled(user_id):
            return None
        return await self.call(self.backend.get_history, user_id)

    async def get_marks(self, user_id: str) -> dict[str, int] | None:
        """Marks per item, or None on a miss or an error (or while they may miss events)."""
        if self.fence.pending and not await self.settled(user_id):
            return None
        return await self.call(self.backend.get_marks, user_id)

    async def invalidate(
        self,
        user_ids: Iterable[str],
        operation: Callable[P, Awaitable[T]],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> bool:
        """Run an invalidation (append_history, drop_users) for users whose events committed;
        on an error the users are fenced until a replay drops their state. True when done."""
        try:
            await operation(*args, **kwargs)
            return True
        except Exception as error:
            self._failed(getattr(operation, "__name__", "invalidate"), error)
            self.fence.add(user_ids)
            return False

    async def settled(self, user_id: str) -> bool:
        """False while the user's cached state must not be used: replays first when pending."""
        if not self.fence.blocks(user_id):
            return True
        await self.replay_pending()
        return not self.fence.blocks(user_id)

    async def replay_pending(self) -> bool:
        """Replay the failed invalidations (app.cache.fence); True when none is pending."""
        try:
            return await self.fence.replay(self.backend)
        except Exception as error:
            self._failed("replay", error)
            return False

    async def close(self) -> None:
        """Close the backend, ignoring errors."""
        await self.call(self.backend.close)


def make_cache(settings: Any, *, on_error: Any = None) -> SafeCache:
    """Redis when a URL is configured, else the in-process cache."""
    backend: CacheBackend
    if settings.redis_url:
        backend = RedisCache(
            settings.redis_url,
            prefix=settings.redis_prefix,
            history_len=settings.history_len,
            ttl_s=settings.user_vector_ttl_s,
            timeout_s=settings.cache_timeout_s,
        )
    else:
        backend = LocalCache(
            max_users=settings.local_cache_size,
            history_len=settings.history_len,
            ttl_s=settings.user_vector_ttl_s,
        )
    return SafeCache(backend, on_error=on_error)
