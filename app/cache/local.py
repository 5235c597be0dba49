"""The in-process backend of the embedded default: an LRU with Redis's semantics."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any

from app.cache.base import CacheBackend, Lookup, MarkChanges, TimeChanges, known_times

Recent = list[tuple[str, int | None]]  # (item, event time in epoch seconds or None), oldest first


class LocalCache(CacheBackend):
    """In-process LRU with the same semantics, for a single process without Redis."""

    kind = "local"

    def __init__(self, *, max_users: int, history_len: int, ttl_s: int):
        self.max_users, self.history_len, self.ttl_s = max_users, history_len, ttl_s
        self.histories: OrderedDict[str, Recent] = OrderedDict()
        self.marks: OrderedDict[str, dict[str, int]] = OrderedDict()  # every item, uncapped
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
        vector = self._vector(user_id, field)
        generation = self._generation(user_id)
        if vector is not None:
            return Lookup(vector, None, generation, user_id, field)
        recent, marks = self._recent(user_id), await self.get_marks(user_id)
        if recent is None:
            return Lookup(None, None, generation, user_id, field, marks)
        times = known_times([t for _, t in recent])
        return Lookup(None, [i for i, _ in recent], generation, user_id, field, marks, times)

    async def store(
        self,
        seen: Lookup,
        vector: bytes | None,
        history: Sequence[str] | None,
        marks: Mapping[str, int] | None = None,
        times: Sequence[int] | None = None,
    ) -> bool:
        """Cache the vector (and history with its times, marks) unless events arrived since
        `seen` was read."""
        user_id, field = seen.user_id, seen.field
        if self._generation(user_id) != seen.generation:
            return False
        if history is not None:
            self._set_history(user_id, _recent(history, times))
        if marks is not None:
            self.marks[user_id] = dict(marks)
            self._evict(self.marks)
        if vector is not None:
            self._set_vector(user_id, field, vector)
        return True

    async def get_history(self, user_id: str) -> list[str] | None:
        """The cached recent history, or None."""
        recent = self._recent(user_id)
        return None if recent is None else [item for item, _ in recent]

    def _recent(self, user_id: str) -> Recent | None:
        """The cached (item, time) pairs, refreshed as recently used, or None."""
        recent = self.histories.get(user_id)
        if recent is not None:
            self.histories.move_to_end(user_id)
        return recent

    async def get_marks(self, user_id: str) -> dict[str, int] | None:
        """The cached marks, or None."""
        marks = self.marks.get(user_id)
        if marks is not None:
            self.marks.move_to_end(user_id)
        return None if marks is None else dict(marks)

    def _set_history(self, user_id: str, recent: Recent) -> None:
        """Replace the cached history."""
        self.histories[user_id] = recent[-self.history_len :]
        self._evict(self.histories)

    async def append_history(
        self,
        histories: Mapping[str, Sequence[str]],
        marks: MarkChanges | None = None,
        times: TimeChanges | None = None,
    ) -> None:
        """Append to cached histories (with the items' times), change cached marks and drop
        the users' vectors."""
        for user_id, items in histories.items():
            cached = self.histories.get(user_id)
            if cached is not None:
                cached.extend(_recent(items, None if times is None else times.get(user_id)))
                del cached[: -self.history_len]
            held = self.marks.get(user_id)
            if held is not None and marks:
                for item, set_bits, clear_bits in marks.get(user_id, ()):
                    held[item] = (held.get(item, 0) & ~clear_bits) | set_bits
            self.vectors.pop(user_id, None)
            self._bump(user_id)

    def _vector(self, user_id: str, field: str) -> bytes | None:
        """A cached, unexpired user vector."""
        entry = self.vectors.get(user_id)
        if entry is None or entry[0] < time.monotonic():
            return None
        return entry[1].get(field)

    def _set_vector(self, user_id: str, field: str, data: bytes) -> None:
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
                self.marks.pop(user_id, None)

    async def close(self) -> None:
        """Nothing to close."""


def _recent(items: Sequence[str], times: Sequence[int] | None) -> Recent:
    """Items paired with their times (None each when not given)."""
    if times is None:
        return [(item, None) for item in items]
    return list(zip(items, times, strict=True))
