"""GET and POST /recommend."""

from typing import Any

import orjson
from fastapi import APIRouter, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError
from starlette.datastructures import QueryParams

from app.schemas import Recommendation, RecommendBody, RecommendQuery
from app.serving.recommend import Ask, Services, recommend

router = APIRouter(prefix="/recommend", tags=["recommend"])


def services_of(request: Request) -> Services:
    """The serving services built in the lifespan."""
    services: Services = request.app.state.services
    return services


def as_json(recommendation: dict[str, Any]) -> Response:
    """Serialised by orjson: the answer is built by us, so a pydantic model adds only cost."""
    return Response(orjson.dumps(recommendation), media_type="application/json")


def split_ids(values: list[str]) -> list[str]:
    """Repeated and comma-separated ids, flattened."""
    return [part for value in values for part in value.split(",") if part]


def ask_of(params: RecommendQuery | RecommendBody, history: tuple[str, ...] | None = None) -> Ask:
    """The flow's request from GET's query or POST's body."""
    return Ask(
        user_id=params.user_id,
        k=params.k,
        model=params.model,
        experiment=params.experiment,
        exclude=tuple(params.exclude),
        history=history,
    )


def query_parameters(model: type[BaseModel]) -> list[dict[str, Any]]:
    """OpenAPI parameter objects for a model's fields, for routes that parse their own query."""
    schema = model.model_json_schema()
    required = set(schema.get("required", []))
    return [
        {"name": name, "in": "query", "required": name in required, "schema": field}
        | ({"description": field["description"]} if "description" in field else {})
        for name, field in schema["properties"].items()
    ]


SINGLE_PARAMS = ("user_id", "k", "model", "experiment")


def parse_query(params: QueryParams) -> RecommendQuery:
    """The validated query; errors are 422s located at ("query", field), as FastAPI's are."""
    raw: dict[str, Any] = {key: params[key] for key in SINGLE_PARAMS if key in params}
    if "exclude" in params:
        raw["exclude"] = split_ids(params.getlist("exclude"))
    try:
        return RecommendQuery.model_validate(raw)
    except ValidationError as error:
        details = error.errors(include_url=False)
        raise RequestValidationError(
            [{**d, "loc": ("query", *d["loc"])} for d in details]
        ) from None


@router.get(
    "",
    response_model=Recommendation,
    openapi_extra={"parameters": query_parameters(RecommendQuery)},
)
async def get_recommend(request: Request) -> Response:
    """The user's top-k items from the experiment's arm, or from `model` when named."""
    ask = ask_of(parse_query(request.query_params))
    return as_json(await recommend(ask, services_of(request)))


@router.post("", response_model=Recommendation)
async def post_recommend(request: Request, body: RecommendBody) -> Response:
    """As GET, with `history` for anonymous sessions (it replaces the stored history)."""
    ask = ask_of(body, history=None if body.history is None else tuple(body.history))
    return as_json(await recommend(ask, services_of(request)))
