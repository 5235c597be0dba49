"""GET /compare and GET /compare/offline."""

from typing import Annotated

from fastapi import APIRouter, Query, Request

from app.api.deps import ReadKey, ServicesDep
from app.api.params import FILTER_PARAMETERS, query_filter, split_ids
from app.schemas import Comparison, OfflineComparison
from app.schemas.core import Id
from app.serving.compare import compare_models, offline_table
from app.serving.services import Ask

router = APIRouter(prefix="/compare", tags=["compare"], dependencies=[ReadKey])


@router.get("", response_model=Comparison, openapi_extra={"parameters": FILTER_PARAMETERS})
async def compare(
    request: Request,
    services: ServicesDep,
    user_id: Annotated[Id, Query()],
    k: Annotated[int, Query(ge=1, le=1000)] = 10,
    models: Annotated[list[str], Query(description="model names; default: all loaded")] = [],  # noqa: B006
) -> Comparison:
    """Every (or each named) model's list for the user, latency, metrics, pairwise overlap;
    filters (`category`, `attr.NAME`, `price_min`, `price_max`) and rules as for /recommend."""
    names = list(split_ids(models)) or None
    item_filter = query_filter(request.query_params)
    ask = Ask(user_id=user_id, k=k, explain=True, filter=item_filter)
    found = await compare_models(ask, names, services)
    return Comparison.model_validate(found)


@router.get("/offline", response_model=OfflineComparison)
async def compare_offline(services: ServicesDep) -> OfflineComparison:
    """The offline comparison of the loaded checkpoints (validation and test metrics)."""
    return OfflineComparison.model_validate(offline_table(services))
