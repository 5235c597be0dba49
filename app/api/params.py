"""Query parsing shared by the routers that read their own query string."""

from __future__ import annotations

from typing import Any

from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError
from starlette.datastructures import QueryParams

from app.schemas import FilterIn, PriceRange
from app.serving.filters import ItemFilter


def split_ids(values: list[str]) -> list[str]:
    """Repeated and comma-separated ids, flattened."""
    return [part for value in values for part in value.split(",") if part]


def query_parameters(model: type[BaseModel]) -> list[dict[str, Any]]:
    """OpenAPI parameter objects for a model's fields, for routes that parse their own query."""
    schema = model.model_json_schema()
    required = set(schema.get("required", []))
    return [
        {"name": name, "in": "query", "required": name in required, "schema": field}
        | ({"description": field["description"]} if "description" in field else {})
        for name, field in schema["properties"].items()
    ]


def too_many(field: str, count: int, limit: int) -> RequestValidationError:
    """The 422 for a batch longer than its configured limit, located at ("body", field)."""
    error = {
        "type": "too_long",
        "loc": ("body", field),
        "input": count,
        "msg": f"at most {limit} {field} per batch",
    }
    return RequestValidationError([error])


# GET's filter parameters: `attr.NAME` cannot be a declared parameter, so routes that take
# filters parse their own query (query_filter) and document them here.
FILTER_PARAMETERS: list[dict[str, Any]] = [
    {
        "name": "category",
        "in": "query",
        "required": False,
        "schema": {"type": "array", "items": {"type": "string"}},
        "description": 'category path prefixes, any of them: "shoes" matches "shoes/running"',
    },
    {
        "name": "attr.NAME",
        "in": "query",
        "required": False,
        "schema": {"type": "string"},
        "description": "attribute NAME has this value: attr.brand=acme&attr.brand=zeta (any of"
        " a name's values; every name must match)",
    },
    {"name": "price_min", "in": "query", "required": False, "schema": {"type": "number"}},
    {"name": "price_max", "in": "query", "required": False, "schema": {"type": "number"}},
]
ATTRIBUTE_PREFIX = "attr."
PRICE_PARAMS = {"price_min": "min", "price_max": "max"}


def _has_filter(params: QueryParams) -> bool:
    """Whether the query names any filter (cheap: the warm path asks this of every GET)."""
    return any(
        key == "category" or key in PRICE_PARAMS or key.startswith(ATTRIBUTE_PREFIX)
        for key in params
    )


def _query_location(loc: tuple[Any, ...]) -> tuple[Any, ...]:
    """A FilterIn error location as the query's parameter: ("query", "attr.brand", 0)."""
    head, rest = loc[0], loc[1:]
    if head == "categories":
        return ("query", "category", *rest)
    if head == "attributes" and rest:
        return ("query", f"{ATTRIBUTE_PREFIX}{rest[0]}", *rest[1:])
    if head == "price":
        names = {v: k for k, v in PRICE_PARAMS.items()}
        return ("query", names.get(rest[0], "price_min") if rest else "price_min")
    return ("query", *loc)


def query_filter(params: QueryParams) -> ItemFilter | None:
    """The filter named by `category`, `attr.NAME` and `price_min`/`price_max`; errors are
    422s located at the query parameter."""
    if not _has_filter(params):
        return None
    raw: dict[str, Any] = {"categories": params.getlist("category")}
    raw["attributes"] = {
        key[len(ATTRIBUTE_PREFIX) :]: params.getlist(key)
        for key in params
        if key.startswith(ATTRIBUTE_PREFIX)
    }
    price = {name: params[key] for key, name in PRICE_PARAMS.items() if key in params}
    if price:
        raw["price"] = price
    try:
        body = FilterIn.model_validate(raw)
    except ValidationError as error:
        details = error.errors(include_url=False)
        raise RequestValidationError(
            [{**d, "loc": _query_location(tuple(d["loc"]))} for d in details]
        ) from None
    return filter_of(body)


def filter_of(body: FilterIn | None) -> ItemFilter | None:
    """The canonical filter of a validated FilterIn (None when it constrains nothing)."""
    if body is None:
        return None
    price = body.price or PriceRange()
    return ItemFilter.of(body.categories, body.attributes, price.min, price.max)
