"""Retention: delete events and exposures older than the configured ages, in small batches."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.db import repo


@dataclass
class Pruned:
    """What one prune run deleted, and the cut-offs it used (None: that kind is kept)."""

    events: int
    exposures: int
    events_before: datetime | None
    exposures_before: datetime | None

    def to_json(self) -> dict[str, object]:
        """Plain dict for the CLI's output."""
        return {
            "events": self.events,
            "exposures": self.exposures,
            "events_before": _iso(self.events_before),
            "exposures_before": _iso(self.exposures_before),
        }


def _iso(moment: datetime | None) -> str | None:
    """ISO-8601 or None."""
    return None if moment is None else moment.isoformat()


def cutoff(days: float | None, now: datetime) -> datetime | None:
    """`now` minus `days`, None when `days` is None."""
    return None if days is None else now - timedelta(days=days)


async def prune(
    sessions: async_sessionmaker[AsyncSession],
    *,
    event_days: float | None,
    exposure_days: float | None,
    batch: int = 10_000,
    now: datetime | None = None,
) -> Pruned:
    """Delete events older than `event_days` and exposures older than `exposure_days`, each
    batch in its own transaction, until none is left."""
    now = now or datetime.now(UTC)
    report = Pruned(0, 0, cutoff(event_days, now), cutoff(exposure_days, now))
    if report.events_before is not None:
        report.events = await _drain(
            sessions, repo.delete_events_before, report.events_before, batch
        )
    if report.exposures_before is not None:
        report.exposures = await _drain(
            sessions, repo.delete_exposures_before, report.exposures_before, batch
        )
    return report


BatchDelete = Callable[..., Awaitable[int]]  # repo.delete_*_before(session=, before=, batch=)


async def _drain(
    sessions: async_sessionmaker[AsyncSession], delete: BatchDelete, before: datetime, batch: int
) -> int:
    """Run one batched delete until it deletes nothing; returns the total."""
    total = 0
    while True:
        async with sessions() as session, session.begin():
            deleted = await delete(session=session, before=before, batch=batch)
        total += deleted
        if deleted < batch:
            return total
