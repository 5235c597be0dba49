"""Query parsing shared by the routers that read their own query string."""

from __future__ import annotations

from typing import Any

from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel


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
