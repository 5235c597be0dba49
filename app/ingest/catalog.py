"""The catalog upsert flows: PUT /items, and `recsys items import` from a catalog file."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import repo
from app.schemas import ItemIn
from app.serving.catalog import Catalog
from app.serving.filters import FilterIndex
from models.catalog import CatalogItem


def item_rows(items: Sequence[ItemIn]) -> dict[str, dict[str, Any]]:
    """Rows to upsert by item id, stamped now; the last entry wins when an id repeats."""
    now = datetime.now(UTC)
    return {item.item_id: {**item.model_dump(), "updated_at": now} for item in items}


async def upsert_items(
    *,
    session: AsyncSession,
    catalog: Catalog,
    items: list[ItemIn],
    filters: FilterIndex | None = None,
) -> int:
    """Insert or update items in one transaction; the last entry wins when an id repeats."""
    latest = item_rows(items)
    written = await repo.upsert_items(session=session, items=list(latest.values()))
    await session.commit()
    # Takes effect here at once; other replicas on their next refresh.
    catalog.update_items({item_id: row["active"] for item_id, row in latest.items()})
    if filters is not None:
        filters.apply(latest.values())
    return written


class BadCatalogItem(ValueError):
    """A loaded catalog item that PUT /items would refuse: its index and the first error."""

    def __init__(self, index: int, item_id: object, error: ValidationError) -> None:
        first = error.errors(include_url=False)[0]
        self.index = index
        self.field = ".".join(str(part) for part in first["loc"])
        # Counted from 0, as the index in PUT /items' error locations.
        super().__init__(f"item {index} (item_id {item_id!r}): {self.field}: {first['msg']}")


def validate_catalog(items: Sequence[CatalogItem]) -> list[ItemIn]:
    """Loaded items checked as PUT /items checks them; BadCatalogItem names the first bad one."""
    valid = []
    for index, item in enumerate(items):
        try:
            valid.append(ItemIn.model_validate(asdict(item)))
        except ValidationError as error:
            raise BadCatalogItem(index, item.item_id, error) from None
    return valid


async def import_items(*, session: AsyncSession, items: Sequence[ItemIn], batch: int) -> int:
    """Upsert validated items, `batch` rows a statement, in one transaction (all or nothing);
    returns how many distinct ids were written."""
    rows = list(item_rows(items).values())
    for start in range(0, len(rows), batch):
        await repo.upsert_items(session=session, items=rows[start : start + batch])
    await session.commit()
    return len(rows)
