"""GET /compare and GET /compare/offline."""

from typing import Annotated

from fastapi import APIRouter, Query

from app.api.deps import ServicesDep
from app.api.params import split_ids
from app.schemas import Comparison, OfflineComparison
from app.serving.compare import compare_models, offline_table
from app.serving.services import Ask

router = APIRouter(prefix="/compare", tags=["compare"])


@router.get("", response_model=Comparison)
async def compare(
    services: ServicesDep,
    user_id: Annotated[str, Query(min_length=1, max_length=256)],
    k: Annotated[int, Query(ge=1, le=1000)] = 10,
    models: Annotated[list[str], Query(description="model names; default: all loaded")] = [],  # noqa: B006
) -> Comparison:
    """Every (or each named) model's list for the user, latency, metrics, pairwise overlap."""
    names = list(split_ids(models)) or None
    found = await compare_models(Ask(user_id=user_id, k=k, explain=True), names, services)
    return Comparison.model_validate(found)


@router.get("/offline", response_model=OfflineComparison)
async def compare_offline(services: ServicesDep) -> OfflineComparison:
    """The offline comparison of the loaded checkpoints (validation and test metrics)."""
    return OfflineComparison.model_validate(offline_table(services))
