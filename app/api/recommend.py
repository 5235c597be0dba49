"""GET and POST /recommend."""

from typing import Any

import orjson
from fastapi import APIRouter, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.datastructures import QueryParams

from app.api.deps import ReadKey, check_read_key, services_of
from app.api.params import FILTER_PARAMETERS, filter_of, query_filter, query_parameters, split_ids
from app.domain import epoch_seconds
from app.schemas import Recommendation, RecommendBody, RecommendQuery
from app.schemas.core import HistoryItem
from app.serving.filters import ItemFilter
from app.serving.recommend import recommend
from app.serving.services import Ask

router = APIRouter(prefix="/recommend", tags=["recommend"])
# The hot path takes the services from the request, not through ServicesDep: FastAPI solves a
# dependency per request, about 80 more Python calls on a warm GET (962 -> 1041 by cProfile).
SINGLE_PARAMS = ("user_id", "k", "model", "experiment", "explain", "repeats")


def as_json(recommendation: dict[str, Any]) -> Response:
    """Serialised by orjson: the answer is built by us, so a pydantic model adds only cost."""
    return Response(orjson.dumps(recommendation), media_type="application/json")


def ask_of(
    params: RecommendQuery | RecommendBody,
    history: tuple[str, ...] | None = None,
    item_filter: ItemFilter | None = None,
    times: tuple[int, ...] | None = None,
) -> Ask:
    """The flow's request from GET's query or POST's body."""
    return Ask(
        user_id=params.user_id,
        k=params.k,
        model=params.model,
        experiment=params.experiment,
        exclude=tuple(params.exclude),
        history=history,
        times=times,
        explain=params.explain,
        repeats=params.repeats,
        filter=item_filter,
    )


def history_of(
    history: list[HistoryItem] | None,
) -> tuple[tuple[str, ...] | None, tuple[int, ...] | None]:
    """A body's history as item ids and their times in epoch seconds (None: not given)."""
    if history is None:
        return None, None
    items = tuple(e.item_id for e in history)
    stamps = [e.timestamp for e in history if e.timestamp is not None]
    if not history or len(stamps) < len(history):  # validated: all timed or none
        return items, None
    return items, tuple(epoch_seconds(stamp) for stamp in stamps)


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
    openapi_extra={"parameters": query_parameters(RecommendQuery) + FILTER_PARAMETERS},
)
async def get_recommend(request: Request) -> Response:
    """The user's top-k items from the experiment's arm, or from `model` when named."""
    check_read_key(request)
    query = request.query_params
    ask = ask_of(parse_query(query), item_filter=query_filter(query))
    return as_json(await recommend(ask, services_of(request)))


@router.post("", response_model=Recommendation, dependencies=[ReadKey])
async def post_recommend(request: Request, body: RecommendBody) -> Response:
    """As GET, with `history` for anonymous sessions (it replaces the stored history) and
    `filter` (categories, attributes, price range)."""
    history, times = history_of(body.history)
    ask = ask_of(body, history=history, item_filter=filter_of(body.filter), times=times)
    return as_json(await recommend(ask, services_of(request)))
