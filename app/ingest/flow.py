"""The ingestion flow: store a batch durably, then refresh the cache (read-your-writes)."""

from __future__ import annotations

import itertools
import uuid
from collections import defaultdict
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.cache import SafeCache
from app.db import repo
from app.db.repo import EventColumns
from app.domain import DEFAULT_EVENT_WEIGHTS, as_utc, epoch_seconds
from app.ingest.meaning import DEFAULT_RULE, RatingRule, is_input, mark_change
from app.observability import Metrics
from app.schemas import EARLIEST_EVENT, MAX_FUTURE_SKEW_S, EventIn, EventsAccepted


def to_columns(events: Sequence[EventIn]) -> tuple[EventColumns, list[dict[str, Any]]]:
    """Insert columns with generated ids and server time where absent, and any time errors."""
    now = datetime.now(UTC)
    latest = now + timedelta(seconds=MAX_FUTURE_SKEW_S)
    times = [e.get("timestamp") or now for e in events]
    if any(t.tzinfo is None for t in times):
        times = [as_utc(t) for t in times]
    errors = []
    # min/max run in C; the per-event pass only runs for a batch that has a bad time.
    if min(times) < EARLIEST_EVENT or max(times) > latest:
        errors = [
            _time_error(n, t, latest)
            for n, t in enumerate(times)
            if not EARLIEST_EVENT <= t <= latest
        ]
    columns = EventColumns(
        event_id=[e.get("event_id") or uuid.uuid4().hex for e in events],
        user_id=[e["user_id"] for e in events],
        item_id=[e["item_id"] for e in events],
        type=[e["type"] for e in events],
        value=[e.get("value") for e in events],
        event_time=times,
        recommendation_id=[e.get("recommendation_id") for e in events],
    )
    return columns, errors


def _time_error(index: int, stamp: datetime, latest: datetime) -> dict[str, Any]:
    """A validation error in FastAPI's shape for an implausible event time."""
    message = (
        "timestamp is in the future"
        if stamp > latest
        else "timestamp is before 1995 (epoch seconds or milliseconds expected)"
    )
    return {
        "type": "value_error",
        "loc": ("body", "events", index, "timestamp"),
        "msg": message,
        "input": stamp.isoformat(),
    }


def event_order(columns: EventColumns) -> Sequence[int]:
    """The batch's rows in event-time order (stable)."""
    times = columns.event_time
    # Batches usually arrive in time order; sorting (slow on aware datetimes) only when not.
    if any(later < earlier for earlier, later in itertools.pairwise(times)):
        return sorted(range(len(times)), key=times.__getitem__)
    return range(len(times))


def user_updates(
    columns: EventColumns,
    *,
    weights: Mapping[str, float] | None = None,
    rule: RatingRule = DEFAULT_RULE,
) -> tuple[dict[str, list[str]], dict[str, list[tuple[str, int, int]]], dict[str, list[int]]]:
    """Per user, in event-time order: the new model-input items (app.ingest.meaning.is_input;
    every user of the batch has an entry, maybe empty, so their cached state is dropped), the
    (item, set, clear) changes of their marks, and the input items' event times (epoch
    seconds, the model's time gaps read them)."""
    weights = DEFAULT_EVENT_WEIGHTS if weights is None else weights
    histories: dict[str, list[str]] = {user: [] for user in columns.user_id}
    times: dict[str, list[int]] = {user: [] for user in histories}
    marks: dict[str, list[tuple[str, int, int]]] = defaultdict(list)
    users, items, kinds, values = columns.user_id, columns.item_id, columns.type, columns.value
    for n in event_order(columns):
        kind, value = kinds[n], values[n]
        if is_input(kind, value, weights, rule):
            histories[users[n]].append(items[n])
            times[users[n]].append(epoch_seconds(columns.event_time[n]))
        marks[users[n]].append((items[n], *mark_change(kind, value, rule)))
    return histories, marks, times


async def ingest_events(
    *,
    session: AsyncSession,
    cache: SafeCache,
    metrics: Metrics,
    columns: EventColumns,
    weights: Mapping[str, float] | None = None,
    rule: RatingRule = DEFAULT_RULE,
) -> EventsAccepted:
    """Commit the batch in one transaction, then update the cache and the counters. `weights`
    (settings.event_weights) and `rule` say which events are model input and how they mark."""
    inserted = await repo.insert_events(session=session, events=columns)
    await session.commit()
    duplicates = len(columns) - inserted
    histories, marks, times = user_updates(columns, weights=weights, rule=rule)
    if duplicates:
        # Which rows were new is unknown, so drop the cached histories; they reload from the DB.
        await cache.invalidate(
            list(histories), cache.backend.drop_users, list(histories), history=True
        )
    else:
        # A failed invalidation fences the users until it is replayed (app.cache.fence).
        await cache.invalidate(histories, cache.backend.append_history, histories, marks, times)
    metrics.events_ingested.inc(inserted)
    metrics.events_duplicate.inc(duplicates)
    return EventsAccepted(accepted=inserted, duplicates=duplicates)
