"""The catalog: PUT /items, GET /items/{item_id}."""

from datetime import UTC, datetime

from fastapi import APIRouter, HTTPException, Request
from fastapi.exceptions import RequestValidationError

from app.api.deps import SessionDep, SettingsDep, WriteKey
from app.db import repo
from app.schemas import ItemBatch, ItemOut, ItemsUpserted

router = APIRouter(prefix="/items", tags=["items"])


@router.put("", response_model=ItemsUpserted, dependencies=[WriteKey])
async def put_items(
    batch: ItemBatch, session: SessionDep, settings: SettingsDep, request: Request
) -> ItemsUpserted:
    """Insert or update catalog items (title, attributes, active)."""
    if len(batch.items) > settings.max_items_per_batch:
        raise RequestValidationError(
            [
                {
                    "type": "too_long",
                    "loc": ("body", "items"),
                    "input": len(batch.items),
                    "msg": f"at most {settings.max_items_per_batch} items per batch",
                }
            ]
        )
    now = datetime.now(UTC)
    # The last entry wins when an item_id repeats in one batch (one upsert per row).
    latest = {item.item_id: {**item.model_dump(), "updated_at": now} for item in batch.items}
    written = await repo.upsert_items(session=session, items=list(latest.values()))
    await session.commit()
    services = getattr(request.app.state, "services", None)
    if services is not None:  # takes effect here at once; other replicas on their next refresh
        services.catalog.update_items({i: row["active"] for i, row in latest.items()})
    return ItemsUpserted(upserted=written)


@router.get("/{item_id}", response_model=ItemOut)
async def get_item(item_id: str, session: SessionDep) -> ItemOut:
    """One catalog item; 404 when unknown."""
    item = await repo.get_item(session=session, item_id=item_id)
    if item is None:
        raise HTTPException(404, f"item {item_id!r} not found")
    return ItemOut.model_validate(item)
