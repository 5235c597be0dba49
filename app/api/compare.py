"""GET /compare and GET /compare/offline."""

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from app.api.recommend import services_of, split_ids
from app.serving.compare import compare_models, offline_table
from app.serving.recommend import Ask

router = APIRouter(prefix="/compare", tags=["compare"])


@router.get("")
async def compare(
    request: Request,
    user_id: Annotated[str, Query(min_length=1, max_length=256)],
    k: Annotated[int, Query(ge=1, le=1000)] = 10,
    models: Annotated[list[str], Query(description="model names; default: all loaded")] = [],  # noqa: B006
) -> dict[str, Any]:
    """Every (or each named) model's list for the user, latency, metrics, pairwise overlap."""
    names = list(split_ids(models)) or None
    return await compare_models(Ask(user_id=user_id, k=k), names, services_of(request))


@router.get("/offline")
async def compare_offline(request: Request) -> dict[str, Any]:
    """The offline comparison of the loaded checkpoints (validation and test metrics)."""
    return offline_table(services_of(request))
