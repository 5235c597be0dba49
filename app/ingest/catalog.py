"""The catalog upsert flow: store items, then apply their active flags in this process."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from app.db import repo
from app.schemas import ItemIn
from app.serving.catalog import Catalog


async def upsert_items(*, session: AsyncSession, catalog: Catalog, items: list[ItemIn]) -> int:
    """Insert or update items in one transaction; the last entry wins when an id repeats."""
    now = datetime.now(UTC)
    latest = {item.item_id: {**item.model_dump(), "updated_at": now} for item in items}
    written = await repo.upsert_items(session=session, items=list(latest.values()))
    await session.commit()
    # Takes effect here at once; other replicas on their next refresh.
    catalog.update_items({item_id: row["active"] for item_id, row in latest.items()})
    return written
