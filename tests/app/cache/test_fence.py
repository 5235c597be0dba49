"""The invalidation fence: failed invalidations hold users until a replay succeeds."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest

from app.cache import MISS, LocalCache, SafeCache
from app.cache.fence import InvalidationFence


class GatedCache(LocalCache):
    """A local cache whose drops fail or wait when told to."""

    def __init__(self) -> None:
        super().__init__(max_users=100, history_len=10, ttl_s=60)
        self.fail = False
        self.gate: asyncio.Event | None = None
        self.dropped: list[list[str]] = []

    async def drop_users(self, user_ids: Sequence[str], *, history: bool = False) -> None:
        if self.gate is not None:
            await self.gate.wait()
        if self.fail:
            raise ConnectionError("down")
        self.dropped.append(list(user_ids))
        await super().drop_users(user_ids, history=history)

    async def append_history(self, histories: Any, marks: Any = None, times: Any = None) -> None:
        if self.fail:
            raise ConnectionError("down")
        await super().append_history(histories, marks, times)


async def test_a_failed_invalidation_fences_the_user_until_replayed() -> None:
    backend = GatedCache()
    cache = SafeCache(backend)
    backend.fail = True
    assert not await cache.invalidate(["amy"], backend.append_history, {"amy": ["i"]})
    assert await cache.lookup("amy", "mf:v1") is MISS  # not read while pending
    assert cache.fence.blocks("amy") and await cache.get_history("amy") is None
    backend.fail = False
    cache.fence._next_try = 0.0  # past the pause after the failed replay
    seen = await cache.lookup("amy", "mf:v1")  # replays first, then reads
    assert seen is not MISS and not cache.fence.pending and backend.dropped == [["amy"]]
    assert await cache.lookup("bob", "mf:v1") is not MISS  # others were never fenced


async def test_a_failure_during_a_replay_keeps_the_user_pending() -> None:
    backend = GatedCache()
    fence = InvalidationFence()
    fence.add(["amy", "bob"])
    backend.gate = asyncio.Event()
    replay = asyncio.create_task(fence.replay(backend))
    await asyncio.sleep(0)
    fence.add(["amy"])  # a newer event's invalidation failed while the replay was in flight
    assert await fence.replay(backend) is False  # one replay at a time
    backend.gate.set()
    assert await replay is False
    assert fence.pending.keys() == {"amy"}
    assert await fence.replay(backend) is True


async def test_a_failed_replay_waits_before_the_next() -> None:
    backend = GatedCache()
    fence = InvalidationFence(retry_after_s=60)
    fence.add(["amy"])
    backend.fail = True
    with pytest.raises(ConnectionError):
        await fence.replay(backend)
    backend.fail = False
    assert await fence.replay(backend) is False and backend.dropped == []
    fence.add(["cat"])  # a new failure tries at once
    assert await fence.replay(backend) is True
