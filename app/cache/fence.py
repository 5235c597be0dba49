"""Read-your-writes through a cache blip: invalidations that failed, replayed before any read.

After an event commits, the ingest flow drops the user's cached state and bumps their
generation. When Redis cannot be reached at that moment (a pause, a restart, a dropped
connection), the drop is lost, and Redis comes back holding a state built before the event: it
would serve for up to the TTL (`user_vector_ttl_s`, an hour by default).

The fence makes that impossible in this process. A user whose invalidation failed is pending:

1. `SafeCache.lookup` answers MISS for a pending user, so the state is built from the database
   (which holds the committed event), and `SafeCache.store` refuses to cache anything for a
   pending user (`seen is MISS` or `blocks`), so no state is cached while it is pending.
2. `replay` drops the pending users' vectors and histories and bumps their generations in one
   transaction; only once Redis has answered it are they released. Afterwards a stale state
   cannot be read (it is deleted) nor written back: a store still in flight carries a
   generation from before the bump, and the store script refuses a moved generation.
3. A user who fails again while a replay is in flight stays pending: each failure takes a new
   ticket, and a replay releases only the tickets it read before it ran.

So a state built before an acknowledged event is never served after it by this replica. Another
replica that did not see the failure may still read the stale state until this one's replay
runs: the lookup of a pending user and every refresh tick (`RECSYS_REFRESH_INTERVAL_S`) replay.
The pending set is in memory: a process that dies with users pending leaves their stale states
to the TTL.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Iterable

from app.cache.base import CacheBackend

log = logging.getLogger(__name__)


class InvalidationFence:
    """Users whose cached state may predate their committed events, until a replay drops it."""

    def __init__(self, *, retry_after_s: float = 0.5) -> None:
        self.pending: dict[str, int] = {}  # user -> ticket of their latest failed invalidation
        self.retry_after_s = retry_after_s  # a failed replay waits this long before the next
        self._tickets = itertools.count(1)
        self._next_try = 0.0
        self._replaying = False

    def add(self, user_ids: Iterable[str]) -> None:
        """Mark users pending: their invalidation failed after their events committed."""
        for user_id in user_ids:
            self.pending[user_id] = next(self._tickets)
        self._next_try = 0.0  # a new failure is worth a try at once

    def blocks(self, user_id: str) -> bool:
        """True while the user's cached state must be neither read nor written."""
        return user_id in self.pending

    async def replay(self, backend: CacheBackend) -> bool:
        """Drop every pending user's cached state (history too) and bump their generations;
        True when nobody is pending afterwards. Raises the backend's error when it fails."""
        if not self.pending:
            return True
        if self._replaying or time.monotonic() < self._next_try:
            return False  # one replay at a time; a failed one waits before the next
        tickets = dict(self.pending)
        self._replaying = True
        try:
            await backend.drop_users(list(tickets), history=True)
        except Exception:
            self._next_try = time.monotonic() + self.retry_after_s
            raise
        finally:
            self._replaying = False
        for user_id, ticket in tickets.items():
            if self.pending.get(user_id) == ticket:  # no newer failure meanwhile
                del self.pending[user_id]
        log.info("replayed %d cache invalidations after a cache failure", len(tickets))
        return not self.pending
