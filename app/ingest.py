"""The ingestion flow: store a batch durably, then refresh the cache (read-your-writes)."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from app.cache import SafeCache
from app.db import repo
from app.db.repo import EventRow
from app.observability import Metrics
from app.schemas import EventIn, EventsAccepted


def to_rows(events: Sequence[EventIn]) -> list[EventRow]:
    """Fill in generated event ids and server time for events that lack them."""
    now = datetime.now(UTC)
    return [
        EventRow(
            event_id=e.event_id or uuid.uuid4().hex,
            user_id=e.user_id,
            item_id=e.item_id,
            type=e.type,
            value=e.value,
            event_time=e.timestamp or now,
            recommendation_id=e.recommendation_id,
        )
        for e in events
    ]


def items_by_user(rows: Sequence[EventRow]) -> dict[str, list[str]]:
    """Each user's new items in event-time order."""
    histories: dict[str, list[tuple[datetime, str]]] = defaultdict(list)
    for row in rows:
        histories[row.user_id].append((row.event_time, row.item_id))
    return {user: [item for _, item in sorted(pairs, key=lambda p: p[0])] for user, pairs in histories.items()}


async def ingest_events(
    *, session: AsyncSession, cache: SafeCache, metrics: Metrics, events: Sequence[EventIn]
) -> EventsAccepted:
    """Commit the batch in one transaction, then update the cache and the counters."""
    rows = to_rows(events)
    inserted = await repo.insert_events(session=session, events=rows)
    await session.commit()
    duplicates = len(rows) - inserted
    histories = items_by_user(rows)
    if duplicates:
        # Which rows were new is unknown, so drop the cached histories; they reload from the DB.
        await cache.run("drop_users", list(histories), history=True)
    else:
        await cache.run("append_history", histories)
    metrics.events_ingested.inc(inserted)
    metrics.events_duplicate.inc(duplicates)
    return EventsAccepted(accepted=inserted, duplicates=duplicates)
