"""The dashboard's reads (/ui): recent events of a user or an item, catalog entries by id."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.tables import Event, Item
from app.domain import as_utc


@dataclass(frozen=True)
class RecentEvent:
    """One stored event as the dashboard lists it."""

    user_id: str
    item_id: str
    type: str
    value: float | None
    event_time: datetime


async def recent_events(
    *, session: AsyncSession, user_id: str | None = None, item_id: str | None = None, limit: int
) -> list[RecentEvent]:
    """The latest events of a user or of an item (the indexes on (user, time) and time serve
    both), newest first."""
    query = select(Event.user_id, Event.item_id, Event.type, Event.value, Event.event_time)
    if user_id is not None:
        query = query.where(Event.user_id == user_id)
    if item_id is not None:
        query = query.where(Event.item_id == item_id)
    query = query.order_by(Event.event_time.desc(), Event.id.desc()).limit(limit)
    rows = await session.execute(query)
    return [RecentEvent(u, i, t, v, as_utc(when)) for u, i, t, v, when in rows]


async def items_by_ids(*, session: AsyncSession, item_ids: Sequence[str]) -> dict[str, Item]:
    """The catalog entries among `item_ids` (unknown ids are absent)."""
    if not item_ids:
        return {}
    query = select(Item).where(Item.item_id.in_(sorted(set(item_ids))))
    return {row.item_id: row for row in (await session.execute(query)).scalars()}
