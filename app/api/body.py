"""Raw request bodies validated in one pydantic call, with errors as HTTP answers.

A body that is not UTF-8 or not JSON is a 400 (`json_invalid`, app.main turns it into one);
a field that is wrong is a 422 naming it. pydantic's JSON parser refuses some text that is
JSON (the escape of an unpaired surrogate, "\\ud800") as invalid JSON without naming a field,
so a body it cannot parse is read again, off the hot path, by the standard json module and
validated as Python objects: the error then names the field.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi.exceptions import RequestValidationError
from pydantic import TypeAdapter, ValidationError

JSON_INVALID = "json_invalid"


def malformed(msg: str) -> RequestValidationError:
    """The error for a body that cannot be read as JSON (answered 400)."""
    return RequestValidationError([{"type": JSON_INVALID, "loc": ("body",), "msg": msg}])


def in_body(error: ValidationError) -> RequestValidationError:
    """pydantic's field errors located under ("body", ...), as FastAPI locates its own."""
    details = error.errors(include_url=False, include_context=False)
    return RequestValidationError([{**d, "loc": ("body", *d["loc"])} for d in details])


def read_json(body: bytes) -> Any:
    """The body as Python objects; a 400 error when it is not UTF-8, not JSON or too deep."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as error:
        raise malformed(f"the body is not UTF-8: {error.reason} at byte {error.start}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        where = f"line {error.lineno} column {error.colno}"
        raise malformed(f"the body is not JSON: {error.msg} at {where}") from None
    except RecursionError:
        raise malformed("the body is not JSON this service reads: nested too deeply") from None


def body_error(error: ValidationError, body: bytes, adapter: TypeAdapter[Any]) -> Exception:
    """The HTTP error for a raw body `adapter.validate_json` refused: 422s naming the fields,
    or a 400 for a body that is not JSON (read again only when pydantic could not parse it)."""
    if all(detail["type"] != JSON_INVALID for detail in error.errors()):
        return in_body(error)
    data = read_json(body)  # raises the 400
    try:
        adapter.validate_python(data)
    except ValidationError as field_error:
        return in_body(field_error)
    # json read it and the model took it, yet pydantic's parser did not: keep its reason.
    return malformed(str(error.errors(include_url=False)[0]["msg"]))
