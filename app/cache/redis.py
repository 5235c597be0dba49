"""The Redis backend: Lua scripts keep each request to one round trip."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import orjson
import redis.asyncio as aioredis

from app.cache.base import CacheBackend, Lookup, MarkChanges, TimeChanges
from app.cache.mux import MuxConnection, supported

# A history entry is the item id, NUL, and its event time in epoch seconds ('' when not known):
# one list element, so the scripts push and trim as before. Ids never hold NUL
# (app.schemas.core.Id). A list cached before times were (plain ids) reads as not cached: the
# request reloads it from the database, and the store replaces it.
SEP = "\x00"

# ARGV: key prefix, history length, TTL, {user: [history entries]} as JSON,
# {user: [[item, set, clear]]} as JSON. Appends only to histories that are cached (an uncached
# one reloads in full from the database), trims them, changes the marks that are cached
# (old & ~clear | set, in event order), drops the users' vectors and bumps their generation, so
# a vector computed from the older history is not stored.
# One argument instead of thousands: redis-py packs arguments in Python at about 2 us each, which
# made a pipeline of three commands per user cost ~0.1 ms per user. Keys are built inside the
# script, so this needs a standalone Redis (not Redis Cluster). RPUSH goes in slices because
# Lua's unpack() has a stack limit.
APPEND_SCRIPT = """
local prefix, keep, ttl = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local changes = cjson.decode(ARGV[5])
for user, items in pairs(cjson.decode(ARGV[4])) do
  local history = prefix .. 'hist:' .. user
  if #items > 0 and redis.call('EXISTS', history) == 1 then
    for start = 1, #items, 1000 do
      redis.call('RPUSH', history, unpack(items, start, math.min(start + 999, #items)))
    end
    redis.call('LTRIM', history, -keep, -1)
  end
  local marks, change = prefix .. 'seen:' .. user, changes[user]
  if change and redis.call('EXISTS', marks) == 1 then
    for _, c in ipairs(change) do
      local old = tonumber(redis.call('HGET', marks, c[1]) or '0')
      redis.call('HSET', marks, c[1], bit.bor(bit.band(old, bit.bnot(c[3])), c[2]))
    end
  end
  redis.call('DEL', prefix .. 'uvec:' .. user)
  redis.call('INCR', prefix .. 'gen:' .. user)
  redis.call('EXPIRE', prefix .. 'gen:' .. user, ttl)
end
return 0
"""

# KEYS: vectors, history, generation, marks; ARGV: model field. One round trip for a request:
# the vector, or on a miss the cached history and marks. Flat reply, as Lua arrays cannot hold
# nil: {generation, vector} or {generation, '', n, n history items..., marks' field/value pairs}
# (no history cached: n = 0, as an empty list is no key; marks cached: a '' sentinel field).
LOOKUP_SCRIPT = """
local generation = redis.call('GET', KEYS[3]) or ''
local vector = redis.call('HGET', KEYS[1], ARGV[1])
if vector then return {generation, vector} end
local history = redis.call('LRANGE', KEYS[2], 0, -1)
local reply = {generation, '', #history}
for _, item in ipairs(history) do reply[#reply + 1] = item end
for _, part in ipairs(redis.call('HGETALL', KEYS[4])) do reply[#reply + 1] = part end
return reply
"""

# KEYS: vectors, history, generation, marks; ARGV: generation seen at lookup, model field, vector
# or '' (history only), TTL, history length, history as JSON or '', marks as a JSON object or ''.
# Writes nothing when events arrived since the lookup (the generation moved): the vector, history
# and marks came from older events.
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
if ARGV[7] ~= '' then
  local pairs_ = {'', 0}  -- the sentinel: marks are cached even when there are none
  redis.call('DEL', KEYS[4])
  for item, bits in pairs(cjson.decode(ARGV[7])) do
    pairs_[#pairs_ + 1] = item
    pairs_[#pairs_ + 1] = bits
    if #pairs_ >= 2000 then
      redis.call('HSET', KEYS[4], unpack(pairs_))
      pairs_ = {}
    end
  end
  if #pairs_ > 0 then redis.call('HSET', KEYS[4], unpack(pairs_)) end
  redis.call('EXPIRE', KEYS[4], ARGV[4])
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

    def _marks_key(self, user_id: str) -> str:
        return f"{self.prefix}seen:{user_id}"

    def _keys(self, user_id: str) -> list[str]:
        """The user's vector, history, generation and marks keys (the scripts' KEYS)."""
        return [
            self._vector_key(user_id),
            self._history_key(user_id),
            self._generation_key(user_id),
            self._marks_key(user_id),
        ]

    async def ping(self) -> None:
        """Round trip; raises when Redis is unreachable."""
        await self.client.ping()

    async def lookup(self, user_id: str, field: str) -> Lookup:
        """The vector, or the cached history and marks on a miss, and the generation: one round
        trip."""
        reply = await self._lookup(self._keys(user_id), [field])
        if len(reply) == 2:
            return Lookup(reply[1], None, reply[0], user_id, field)
        n = int(reply[2])
        history, times = _history(reply[3 : 3 + n]) if n else (None, None)
        marks = _marks(reply[3 + n :])
        return Lookup(None, history, reply[0], user_id, field, marks, times)

    async def store(
        self,
        seen: Lookup,
        vector: bytes | None,
        history: Sequence[str] | None,
        marks: Mapping[str, int] | None = None,
        times: Sequence[int] | None = None,
    ) -> bool:
        """Cache the vector (and the history with its times and the marks read from the
        database) unless events arrived since `seen` was read; True when stored."""
        payload = "" if history is None else orjson.dumps(_entries(history, times)).decode()
        args: list[bytes | str | int] = [
            seen.generation,
            seen.field,
            vector or b"",
            self.ttl_s,
            self.history_len,
            payload,
            "" if marks is None else orjson.dumps(dict(marks)).decode(),
        ]
        return bool(await self._store(self._keys(seen.user_id), args))

    async def get_history(self, user_id: str) -> list[str] | None:
        """The cached recent history, oldest first, or None when not cached."""
        async with self.client.pipeline(transaction=False) as pipe:
            pipe.exists(self._history_key(user_id))
            pipe.lrange(self._history_key(user_id), 0, -1)
            exists, entries = await pipe.execute()
        return [e.decode().partition(SEP)[0] for e in entries] if exists else None

    async def get_marks(self, user_id: str) -> dict[str, int] | None:
        """The cached marks per item, or None when not cached."""
        flat = await self.client.execute_command("HGETALL", self._marks_key(user_id))
        if isinstance(flat, dict):  # RESP3 clients answer a map
            flat = [part for pair in flat.items() for part in pair]
        return _marks(flat)

    async def append_history(
        self,
        histories: Mapping[str, Sequence[str]],
        marks: MarkChanges | None = None,
        times: TimeChanges | None = None,
    ) -> None:
        """Append to histories (with the items' times) and change marks that are cached and
        drop the users' vectors: one script call."""
        if histories:
            entries = {
                user: _entries(items, None if times is None else times.get(user))
                for user, items in histories.items()
            }
            payload = orjson.dumps(entries).decode()
            changes = orjson.dumps(marks or {}).decode()
            args: list[str | int] = [self.prefix, self.history_len, self.ttl_s, payload, changes]
            await self._append_script(keys=[], args=args)

    async def drop_users(self, user_ids: Sequence[str], *, history: bool = False) -> None:
        """Forget users' vectors (and their histories when erasing); bump their generations."""
        if not user_ids:
            return
        keys = [self._vector_key(u) for u in user_ids]
        if history:
            keys += [self._history_key(u) for u in user_ids]
            keys += [self._marks_key(u) for u in user_ids]
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


def _marks(flat: Sequence[Any]) -> dict[str, int] | None:
    """Marks from HGETALL's flat field/value reply (with its '' sentinel); None when empty, as
    the hash is not cached."""
    if not flat:
        return None
    return {flat[n].decode(): int(flat[n + 1]) for n in range(0, len(flat), 2) if flat[n] != b""}


def _entries(items: Sequence[str], times: Sequence[int] | None) -> list[str]:
    """History entries: each item with its time (SEP), or with '' when times are not given."""
    if times is None:
        return [item + SEP for item in items]
    return [f"{item}{SEP}{time}" for item, time in zip(items, times, strict=True)]


def _history(raw: Sequence[bytes]) -> tuple[list[str] | None, list[int] | None]:
    """Items and their times (None unless all are known) from cached entries; (None, None) for
    a list cached before times were, whose entries hold no SEP."""
    # One decode and split for the list: each entry holds exactly one SEP, so there are 2n
    # parts exactly when every entry has its time field.
    parts = b"\x00".join(raw).decode().split(SEP)
    if len(parts) != 2 * len(raw):
        return None, None
    stamps = parts[1::2]
    times = None if "" in stamps else list(map(int, stamps))
    return parts[0::2], times
