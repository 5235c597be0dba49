"""The catalog: PUT /items, GET /items/{item_id}."""

from fastapi import APIRouter

from app.api.deps import ReadKey, ServicesDep, SessionDep, SettingsDep, WriteKey
from app.api.params import too_many
from app.db import repo
from app.errors import NotFound
from app.ingest.catalog import upsert_items
from app.schemas import ItemBatch, ItemOut, ItemsUpserted
from app.schemas.core import stored_text

router = APIRouter(prefix="/items", tags=["items"])


@router.put("", response_model=ItemsUpserted, dependencies=[WriteKey])
async def put_items(
    batch: ItemBatch, session: SessionDep, settings: SettingsDep, services: ServicesDep
) -> ItemsUpserted:
    """Insert or update catalog items (title, description, categories, attributes, price,
    active) in one transaction; a bad field is a 422 naming it, and nothing is stored."""
    if len(batch.items) > settings.max_items_per_batch:
        raise too_many("items", len(batch.items), settings.max_items_per_batch)
    written = await upsert_items(
        session=session, catalog=services.catalog, items=batch.items, filters=services.filters
    )
    return ItemsUpserted(upserted=written)


@router.get("/{item_id}", response_model=ItemOut, dependencies=[ReadKey])
async def get_item(item_id: str, session: SessionDep) -> ItemOut:
    """One catalog item; 404 when unknown."""
    try:
        stored_text(item_id)  # Postgres refuses to even look up an id with a NUL in it
    except ValueError:
        raise NotFound(f"item {item_id!r} not found") from None
    item = await repo.get_item(session=session, item_id=item_id)
    if item is None:
        raise NotFound(f"item {item_id!r} not found")
    return ItemOut.model_validate(item)
