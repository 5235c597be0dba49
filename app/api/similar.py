"""GET /items/{item_id}/similar: the product page's list."""

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request

from app.api.deps import ReadKey, ServicesDep
from app.api.params import FILTER_PARAMETERS, query_filter
from app.schemas import SimilarItems
from app.schemas.core import Id, Name
from app.serving.similar import similar_items

router = APIRouter(prefix="/items", tags=["items"])


@router.get(
    "/{item_id}/similar",
    response_model=SimilarItems,
    dependencies=[ReadKey],
    openapi_extra={"parameters": FILTER_PARAMETERS},
)
async def similar(
    request: Request,
    services: ServicesDep,
    item_id: Annotated[Id, Path()],
    k: Annotated[int, Query(ge=1, le=1000)] = 10,
    model: Annotated[Name | None, Query(description="default: the default")] = None,
) -> SimilarItems:
    """The active items nearest to `item_id` by the model's item vectors, never the item itself;
    by content vectors (`"model": "content"`) when the model does not know it; 404 when nothing
    knows it. Filters (`category`, `attr.NAME`, `price_min`, `price_max`) as for /recommend."""
    item_filter = query_filter(request.query_params)
    return SimilarItems.model_validate(similar_items(item_id, k, model, services, item_filter))
