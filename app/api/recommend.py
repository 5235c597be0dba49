"""GET and POST /recommend."""

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Query, Request, Response

from app.recommend import Ask, Services, recommend
from app.schemas import Recommendation, RecommendBody

router = APIRouter(prefix="/recommend", tags=["recommend"])


def services_of(request: Request) -> Services:
    """The serving services built in the lifespan."""
    services: Services = request.app.state.services
    return services


def as_json(recommendation: dict[str, Any]) -> Response:
    """Serialised by orjson: the answer is built by us, so a pydantic model adds only cost."""
    return Response(orjson.dumps(recommendation), media_type="application/json")


def split_ids(values: list[str]) -> tuple[str, ...]:
    """Repeated and comma-separated ids, flattened."""
    return tuple(part for value in values for part in value.split(",") if part)


@router.get("", response_model=Recommendation)
async def get_recommend(
    request: Request,
    user_id: Annotated[str, Query(min_length=1, max_length=256)],
    k: Annotated[int, Query(ge=1, le=1000)] = 10,
    model: str | None = None,
    experiment: str | None = None,
    exclude: Annotated[list[str], Query(description="item ids; repeat or comma-separate")] = [],  # noqa: B006
) -> Response:
    """The user's top-k items from the experiment's arm, or from `model` when named."""
    ask = Ask(user_id=user_id, k=k, model=model, experiment=experiment, exclude=split_ids(exclude))
    return as_json(await recommend(ask, services_of(request)))


@router.post("", response_model=Recommendation)
async def post_recommend(request: Request, body: RecommendBody) -> Response:
    """As GET, with `history` for anonymous sessions (it replaces the stored history)."""
    ask = Ask(
        user_id=body.user_id,
        k=body.k,
        model=body.model,
        experiment=body.experiment,
        exclude=tuple(body.exclude),
        history=None if body.history is None else tuple(body.history),
    )
    return as_json(await recommend(ask, services_of(request)))
