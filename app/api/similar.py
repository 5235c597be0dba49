"""GET /items/{item_id}/similar: the product page's list."""

from typing import Annotated

from fastapi import APIRouter, Path, Query

from app.api.deps import ServicesDep
from app.schemas import SimilarItems
from app.serving.similar import similar_items

router = APIRouter(prefix="/items", tags=["items"])


@router.get("/{item_id}/similar", response_model=SimilarItems)
async def similar(
    services: ServicesDep,
    item_id: Annotated[str, Path(min_length=1, max_length=256)],
    k: Annotated[int, Query(ge=1, le=1000)] = 10,
    model: Annotated[str | None, Query(max_length=64, description="default: the default")] = None,
) -> SimilarItems:
    """The active items nearest to `item_id` by the model's item vectors, never the item itself;
    by content vectors (`"model": "content"`) when the model does not know it; 404 when nothing
    knows it."""
    return SimilarItems.model_validate(similar_items(item_id, k, model, services))
