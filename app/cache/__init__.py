"""User-embedding and recent-history cache: Redis, or an in-process LRU on the embedded default.

The cache is an accelerator, never a source of truth: every failure is counted and swallowed so
that a Redis outage degrades latency, not availability.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import orjson
import redis.asyncio as aioredis

from app.cache import mux as redis_mux
from app.cache.mux import MuxConnection

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Lookup:
    """One read of a user: the vector for one model version, else the cached history, and the
    user's generation (bumped by every write of events) for a conditional store later."""

    vector: bytes | None
    history: list[str] | None
    generation: bytes


MISS = Lookup(None, None, b"")  # what a failed read looks like: nothing cached, no generation


class CacheBackend(Protocol):
    """What the service needs from a cache."""

    kind: str

    async def ping(self) -> None: ...
    async def lookup(self, user_id: str, field: str) -> Lookup: ...
    async def store(
        self,
        user_id: str,
        field: str,
        seen: Lookup,
        vector: bytes | None,
        history: Sequence[str] | None,
    ) -> bool: ...
    async def get_history(self, user_id: str) -> list[str] | None: ...
    async def set_history(self, user_id: str, items: Sequence[str]) -> None: ...
    async def append_history(self, histories: Mapping[str, Sequence[str]]) -> None: ...
    async def get_vector(self, user_id: str, field: str) -> bytes | None: ...
    async def set_vector(self, user_id: str, field: str, data: bytes) -> None: ...
    async def drop_users(self, user_ids: Sequence[str], *, history: bool = False) -> None: ...
    async def close(self) -> None: ...


# ARGV: key prefix, history length, TTL, {user: [items]} as JSON. Appends only to histories that
# are cached (an uncached one reloads in full from the database), trims them, drops the users'
# vectors and bumps their generation, so a vector computed from the older history is not stored.
# One argument instead of thousands: redis-py packs arguments in Python at about 2 us each, which
# made a pipeline of three commands per user cost ~0.1 ms per user. Keys are built inside the
# script, so this needs a standalone Redis (not Redis Cluster). RPUSH goes in slices because
# Lua's unpack() has a stack limit.
APPEND_SCRIPT = """
local prefix, keep, ttl = ARGV[1], tonumber(ARGV[2]), ARGV[3]
for user, items in pairs(cjson.decode(ARGV[4])) do
  local history = prefix .. 'hist:' .. user
  if redis.call('EXISTS', history) == 1 then
    for start = 1, #items, 1000 do
      redis.call('RPUSH', history, unpack(items, start, math.min(start + 999, #items)))
    end
    redis.call('LTRIM', history, -keep, -1)
  end
  redis.call('DEL', prefix .. 'uvec:' .. user)
  redis.call('INCR', prefix .. 'gen:' .. user)
  redis.call('EXPIRE', prefix .. 'gen:' .. user, ttl)
end
return 0
"""

# KEYS: vectors, history, generation; ARGV: model field. One round trip for a request: the
# vector, or on a miss the cached history. Flat reply, as Lua arrays cannot hold nil:
# {generation, vector or '', 1 if the history is cached else 0, items...}.
LOOKUP_SCRIPT = """
local generation = redis.call('GET', KEYS[3]) or ''
local vector = redis.call('HGET', KEYS[1], ARGV[1])
if vector then return {generation, vector, 0} end
if redis.call('EXISTS', KEYS[2]) == 0 then return {generation, '', 0} end
local reply = {generation, '', 1}
for _, item in ipairs(redis.call('LRANGE', KEYS[2], 0, -1)) do reply[#reply + 1] = item end
return reply
"""

# KEYS: vectors, history, generation; ARGV: generation seen at lookup, model field, vector or ''
# (history only), TTL, history length, history as JSON or ''. Writes nothing when events arrived
# since the lookup (the generation moved): the vector and history came from an older history.
STORE_SCRIPT = """
if (redis.call('GET', KEYS[3]) or '') ~= ARGV[1] then return 0 end
if ARGV[6] ~= '' then
  local items = cjson.decode(ARGV[6])
  redis.call('DEL', KEYS[2])
  for start = math.max(1, #items - tonumber(ARGV[5]) + 1), #items, 1000 do
    redis.call('RPUSH', KEYS[2], unpack(items, start, math.min(start + 999, #items)))
  end
  redis.call('EXPIRE', KEYS[2], ARGV[4])
end
if ARGV[3] ~= '' then
  redis.call('HSET', KEYS[1], ARGV[2], ARGV[3])
  redis.call('EXPIRE', KEYS[1], ARGV[4])
end
return 1
"""


class RedisCache:
    """Per user: a capped list of recent item ids and a hash of vectors keyed by model:version."""

    kind = "redis"

    def __init__(
        self,
        url: str,
        *,
        prefix: str,
        history_len: int,
        ttl_s: int,
        timeout_s: float,
        shared_connection: bool = True,
    ):
        self.client = aioredis.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s, retry_on_timeout=False
        )
        self.prefix, self.history_len, self.ttl_s = prefix, history_len, ttl_s
        self._append_script = self.client.register_script(APPEND_SCRIPT)
        # The per-request scripts go over one shared, pipelined connection (see redis_mux);
        # shared_connection=False keeps them on redis-py's pool (bench/redis_client.py).
        self.mux = (
            MuxConnection(url, timeout_s=timeout_s)
            if shared_connection and redis_mux.supported(url)
            else None
        )
        self._lookup = self._per_request(LOOKUP_SCRIPT)
        self._store = self._per_request(STORE_SCRIPT)

    def _per_request(self, source: str) -> Callable[[list[str], list[Any]], Awaitable[Any]]:
        """Run a script for one request: on the shared connection when there is one."""
        mux = self.mux
        if mux is None:
            script = self.client.register_script(source)
            return lambda keys, args: script(keys=keys, args=args)
        sha = mux.register(source)
        return lambda keys, args: mux.evalsha(sha, keys, args)

    def _history_key(self, user_id: str) -> str:
        return f"{self.prefix}hist:{user_id}"

    def _vector_key(self, user_id: str) -> str:
        return f"{self.prefix}uvec:{user_id}"

    def _generation_key(self, user_id: str) -> str:
        return f"{self.prefix}gen:{user_id}"

    def _keys(self, user_id: str) -> list[str]:
        """The user's vector, history and generation keys (the scripts' KEYS)."""
        return [
            self._vector_key(user_id),
            self._history_key(user_id),
            self._generation_key(user_id),
        ]

    async def ping(self) -> None:
        """Round trip; raises when Redis is unreachable."""
        await self.client.ping()

    async def lookup(self, user_id: str, field: str) -> Lookup:
        """The vector, or the cached history on a miss, and the generation: one round trip."""
        reply = await self._lookup(self._keys(user_id), [field])
        history = [item.decode() for item in reply[3:]] if reply[2] else None
        return Lookup(reply[1] or None, history, reply[0])

    async def store(
        self,
        user_id: str,
        field: str,
        seen: Lookup,
        vector: bytes | None,
        history: Sequence[str] | None,
    ) -> bool:
        """Cache the vector (and the history read from the database) unless events arrived
        since `seen` was read; True when stored."""
        payload = "" if history is None else orjson.dumps(list(history)).decode()
        blob = vector or b""
        args: list[bytes | str | int] = [
            seen.generation,
            field,
            blob,
            self.ttl_s,
            self.history_len,
            payload,
        ]
        return bool(await self._store(self._keys(user_id), args))

    async def get_history(self, user_id: str) -> list[str] | None:
        """The cached recent history, oldest first, or None when not cached."""
        async with self.client.pipeline(transaction=False) as pipe:
            pipe.exists(self._history_key(user_id))
            pipe.lrange(self._history_key(user_id), 0, -1)
            exists, items = await pipe.execute()
        return [i.decode() for i in items] if exists else None

    async def set_history(self, user_id: str, items: Sequence[str]) -> None:
        """Replace the cached history (an empty one is not cached: it reloads from the database)."""
        key = self._history_key(user_id)
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.delete(key)
            if items:
                pipe.rpush(key, *items[-self.history_len :])
                pipe.expire(key, self.ttl_s)
            await pipe.execute()

    async def append_history(self, histories: Mapping[str, Sequence[str]]) -> None:
        """Append to histories that are cached and drop the users' vectors: one script call."""
        if histories:
            payload = orjson.dumps(histories).decode()
            args: list[str | int] = [self.prefix, self.history_len, self.ttl_s, payload]
            await self._append_script(keys=[], args=args)

    async def get_vector(self, user_id: str, field: str) -> bytes | None:
        """A cached user vector for one model version."""
        value = await self.client.hget(self._vector_key(user_id), field)
        return value.encode() if isinstance(value, str) else value

    async def set_vector(self, user_id: str, field: str, data: bytes) -> None:
        """Cache a user vector for one model version, with the TTL."""
        key = self._vector_key(user_id)
        async with self.client.pipeline(transaction=False) as pipe:
            pipe.hset(key, field, data)
            pipe.expire(key, self.ttl_s)
            await pipe.execute()

    async def drop_users(self, user_ids: Sequence[str], *, history: bool = False) -> None:
        """Forget users' vectors (and their histories when erasing); bump their generations."""
        if not user_ids:
            return
        keys = [self._vector_key(u) for u in user_ids]
        if history:
            keys += [self._history_key(u) for u in user_ids]
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.delete(*keys)
            for user_id in user_ids:
                pipe.incr(self._generation_key(user_id))
                pipe.expire(self._generation_key(user_id), self.ttl_s)
            await pipe.execute()

    async def close(self) -> None:
        """Close the connection pool and the shared connection."""
        if self.mux is not None:
            await self.mux.close()
        await self.client.aclose()


class LocalCache:
    """In-process LRU with the same semantics, for a single process without Redis."""

    kind = "local"

    def __init__(self, *, max_users: int, history_len: int, ttl_s: int):
        self.max_users, self.history_len, self.ttl_s = max_users, history_len, ttl_s
        self.histories: OrderedDict[str, list[str]] = OrderedDict()
        self.vectors: OrderedDict[str, tuple[float, dict[str, bytes]]] = OrderedDict()
        self.generations: dict[str, int] = {}  # bumped by writes; a counter per process suffices

    def _evict(self, store: OrderedDict[str, Any]) -> None:
        while len(store) > self.max_users:
            store.popitem(last=False)

    async def ping(self) -> None:
        """Always reachable."""

    def _generation(self, user_id: str) -> bytes:
        return str(self.generations.get(user_id, 0)).encode()

    def _bump(self, user_id: str) -> None:
        self.generations[user_id] = self.generations.get(user_id, 0) + 1

    async def lookup(self, user_id: str, field: str) -> Lookup:
        """The vector, or the cached history on a miss, and the generation."""
        vector = await self.get_vector(user_id, field)
        history = None if vector is not None else await self.get_history(user_id)
        return Lookup(vector, history, self._generation(user_id))

    async def store(
        self,
        user_id: str,
        field: str,
        seen: Lookup,
        vector: bytes | None,
        history: Sequence[str] | None,
    ) -> bool:
        """Cache the vector (and history) unless events arrived since `seen` was read."""
        if self._generation(user_id) != seen.generation:
            return False
        if history is not None:
            await self.set_history(user_id, history)
        if vector is not None:
            await self.set_vector(user_id, field, vector)
        return True

    async def get_history(self, user_id: str) -> list[str] | None:
        """The cached recent history, or None."""
        items = self.histories.get(user_id)
        if items is not None:
            self.histories.move_to_end(user_id)
        return None if items is None else list(items)

    async def set_history(self, user_id: str, items: Sequence[str]) -> None:
        """Replace the cached history."""
        self.histories[user_id] = list(items[-self.history_len :])
        self._evict(self.histories)

    async def append_history(self, histories: Mapping[str, Sequence[str]]) -> None:
        """Append to cached histories and drop the users' vectors."""
        for user_id, items in histories.items():
            cached = self.histories.get(user_id)
            if cached is not None:
                cached.extend(items)
                del cached[: -self.history_len]
            self.vectors.pop(user_id, None)
            self._bump(user_id)

    async def get_vector(self, user_id: str, field: str) -> bytes | None:
        """A cached, unexpired user vector."""
        entry = self.vectors.get(user_id)
        if entry is None or entry[0] < time.monotonic():
            return None
        return entry[1].get(field)

    async def set_vector(self, user_id: str, field: str, data: bytes) -> None:
        """Cache a user vector with the TTL."""
        expires, fields = self.vectors.get(user_id, (0.0, {}))
        if expires < time.monotonic():
            fields = {}
        fields[field] = data
        self.vectors[user_id] = (time.monotonic() + self.ttl_s, fields)
        self.vectors.move_to_end(user_id)
        self._evict(self.vectors)

    async def drop_users(self, user_ids: Sequence[str], *, history: bool = False) -> None:
        """Forget users' vectors (and histories); bump their generations."""
        for user_id in user_ids:
            self._bump(user_id)
            self.vectors.pop(user_id, None)
            if history:
                self.histories.pop(user_id, None)

    async def close(self) -> None:
        """Nothing to close."""


class SafeCache:
    """Wraps a backend: errors become misses, are counted and logged, never raised."""

    def __init__(self, backend: CacheBackend, *, on_error: Any = None):
        self.backend = backend
        self.kind = backend.kind
        self.on_error = on_error
        self.last_error: str | None = None

    def _failed(self, operation: str, error: Exception) -> None:
        self.last_error = f"{type(error).__name__}: {error}"
        log.warning("cache %s failed: %s", operation, self.last_error)
        if self.on_error is not None:
            self.on_error(operation)

    async def status(self) -> str:
        """'ok' or 'degraded' after a live ping."""
        try:
            await self.backend.ping()
        except Exception as error:
            self._failed("ping", error)
            return "degraded"
        return "ok"

    async def lookup(self, user_id: str, field: str) -> Lookup:
        """What the cache holds for the user, or MISS on an error."""
        try:
            return await self.backend.lookup(user_id, field)
        except Exception as error:
            self._failed("lookup", error)
            return MISS

    async def store(
        self,
        user_id: str,
        field: str,
        seen: Lookup,
        vector: bytes | None,
        history: Sequence[str] | None,
    ) -> bool:
        """Conditional store; False when skipped, or on an error (counted) or after a MISS."""
        if seen is MISS:  # the cache failed on read: its generation is unknown
            return False
        try:
            return await self.backend.store(user_id, field, seen, vector, history)
        except Exception as error:
            self._failed("store", error)
            return False

    async def get_history(self, user_id: str) -> list[str] | None:
        """History, or None on a miss or an error."""
        try:
            return await self.backend.get_history(user_id)
        except Exception as error:
            self._failed("get_history", error)
            return None

    async def get_vector(self, user_id: str, field: str) -> bytes | None:
        """Vector bytes, or None on a miss or an error."""
        try:
            return await self.backend.get_vector(user_id, field)
        except Exception as error:
            self._failed("get_vector", error)
            return None

    async def run(self, operation: str, *args: Any, **kwargs: Any) -> bool:
        """Run a write operation by name; False when it failed."""
        try:
            await getattr(self.backend, operation)(*args, **kwargs)
        except Exception as error:
            self._failed(operation, error)
            return False
        return True

    async def close(self) -> None:
        """Close the backend, ignoring errors."""
        await self.run("close")


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
