"""The Redis backend: Lua scripts keep each request to one round trip."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import orjson
import redis.asyncio as aioredis

from app.cache.base import CacheBackend, Lookup
from app.cache.mux import MuxConnection, supported

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


class RedisCache(CacheBackend):
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
        # The per-request scripts go over one shared, pipelined connection (see app.cache.mux);
        # shared_connection=False keeps them on redis-py's pool (bench/redis_client.py).
        self.mux = (
            MuxConnection(url, timeout_s=timeout_s)
            if shared_connection and supported(url)
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
        return Lookup(reply[1] or None, history, reply[0], user_id, field)

    async def store(
        self, seen: Lookup, vector: bytes | None, history: Sequence[str] | None
    ) -> bool:
        """Cache the vector (and the history read from the database) unless events arrived
        since `seen` was read; True when stored."""
        payload = "" if history is None else orjson.dumps(list(history)).decode()
        args: list[bytes | str | int] = [
            seen.generation,
            seen.field,
            vector or b"",
            self.ttl_s,
            self.history_len,
            payload,
        ]
        return bool(await self._store(self._keys(seen.user_id), args))

    async def get_history(self, user_id: str) -> list[str] | None:
        """The cached recent history, oldest first, or None when not cached."""
        async with self.client.pipeline(transaction=False) as pipe:
            pipe.exists(self._history_key(user_id))
            pipe.lrange(self._history_key(user_id), 0, -1)
            exists, items = await pipe.execute()
        return [i.decode() for i in items] if exists else None

    async def append_history(self, histories: Mapping[str, Sequence[str]]) -> None:
        """Append to histories that are cached and drop the users' vectors: one script call."""
        if histories:
            payload = orjson.dumps(histories).decode()
            args: list[str | int] = [self.prefix, self.history_len, self.ttl_s, payload]
            await self._append_script(keys=[], args=args)

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
