"""What the service needs from a cache, and what a failed read looks like."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Lookup:
    """One read of a user: the vector for one model version, else the cached history, and the
    user's generation (bumped by every write of events) for a conditional store later."""

    vector: bytes | None
    history: list[str] | None
    generation: bytes
    user_id: str = ""
    field: str = ""  # the model version the vector belongs to ("model:version")
    # With the history (on a vector miss): the user's marks per item, every event ever
    # (app.ingest.meaning: type bits and "hidden"), or None when not cached.
    marks: dict[str, int] | None = None
    # With the history: each item's event time (epoch seconds), or None when one is not known.
    times: list[int] | None = None


# Per user: (item, bits to set, bits to clear) in event order, for the cached marks.
MarkChanges = Mapping[str, Sequence[tuple[str, int, int]]]
# Per user: each appended item's event time (epoch seconds), parallel to its items.
TimeChanges = Mapping[str, Sequence[int]]


def known_times(times: Sequence[int | None]) -> list[int] | None:
    """The times when every one is known, else None: a model reads a history's times whole."""
    return None if None in times else [t for t in times if t is not None]


MISS = Lookup(None, None, b"")  # what a failed read looks like: nothing cached, no generation


class CacheBackend(ABC):
    """Per user: a capped list of recent item ids with their event times, marks per item, a
    vector per model version, a generation."""

    kind: str

    @abstractmethod
    async def ping(self) -> None:
        """Round trip; raises when the cache is unreachable."""

    @abstractmethod
    async def lookup(self, user_id: str, field: str) -> Lookup:
        """The vector for `field` (model:version), else the cached history, and the generation."""

    @abstractmethod
    async def store(
        self,
        seen: Lookup,
        vector: bytes | None,
        history: Sequence[str] | None,
        marks: Mapping[str, int] | None = None,
        times: Sequence[int] | None = None,
    ) -> bool:
        """Cache the vector for `seen`'s user and field (and a history with its `times`, None:
        not known, and marks read from the database) unless events arrived since `seen` was
        read; True when stored."""

    @abstractmethod
    async def get_history(self, user_id: str) -> list[str] | None:
        """The cached recent history, oldest first, or None when not cached."""

    @abstractmethod
    async def get_marks(self, user_id: str) -> dict[str, int] | None:
        """The cached marks per item, or None when not cached."""

    @abstractmethod
    async def append_history(
        self,
        histories: Mapping[str, Sequence[str]],
        marks: MarkChanges | None = None,
        times: TimeChanges | None = None,
    ) -> None:
        """Append to the histories (with the items' `times`; None: not known) and change the
        marks that are cached, drop the users' vectors, bump generations (every user in
        `histories`, even with no items)."""

    @abstractmethod
    async def drop_users(self, user_ids: Sequence[str], *, history: bool = False) -> None:
        """Forget users' vectors (and their histories and marks when erasing); bump their
        generations."""

    @abstractmethod
    async def close(self) -> None:
        """Release connections."""
