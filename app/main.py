"""create_app(): the FastAPI application and its lifespan (engine, cache, metrics)."""

from __future__ import annotations

import gc
import logging
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import TypeAdapter
from sqlalchemy import exc as sa_exc
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import ClientDisconnect

from app.api import (
    compare,
    events,
    experiments,
    health,
    items,
    models,
    recommend,
    rules,
    similar,
    users,
)
from app.api.body import JSON_INVALID
from app.api.cors import cors_options
from app.cache import make_cache
from app.config import Settings, get_settings
from app.db.session import UNREACHABLE, make_engine, make_sessionmaker
from app.errors import Conflict, ServiceError
from app.observability import Metrics, RequestMiddleware, configure_logging
from app.schemas import EVENT_BATCH
from app.serving.lifecycle import serving
from app.ui import install as install_ui

log = logging.getLogger(__name__)

# Any other OSError on the way to the database is network trouble too: 503, not 500.
DATABASE_DOWN = (*UNREACHABLE, OSError)


_frozen = False


def _freeze_startup_objects() -> None:
    """Move what startup made (torch, models, ORM metadata) out of the collector's reach, once
    per process: full collections then walk request garbage only, not ~10^5 long-lived objects,
    which keeps their pauses out of the latency tail."""
    global _frozen
    if not _frozen:
        gc.collect()
        gc.freeze()
        _frozen = True


def _lifespan(settings: Settings) -> Any:
    """Open the database engine and the cache for the app's lifetime."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = make_engine(
            settings.database_url,
            connect_timeout_s=settings.db_connect_timeout_s,
            pool_size=settings.db_pool_size,
        )
        app.state.engine = engine
        app.state.sessionmaker = make_sessionmaker(engine)
        app.state.cache = make_cache(settings, on_error=app.state.metrics.cache_error)
        log.info(
            "started",
            extra={
                "fields": {"database": engine.url.get_backend_name(), "cache": app.state.cache.kind}
            },
        )
        try:
            async with serving(
                settings, engine, app.state.sessionmaker, app.state.cache, app.state.metrics
            ) as services:
                app.state.services = services
                _freeze_startup_objects()
                yield
        finally:
            await app.state.cache.close()
            await engine.dispose()

    return lifespan


def _json_safe(value: Any) -> Any:
    """An error's echo of the request as JSON can carry it: unpaired surrogates escaped
    ("\\ud800"), bytes that are not UTF-8 too ("\\xff"), NaN and infinities as text;
    otherwise the 4xx itself would fail as a 500."""
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, bytes):
        return value.decode("utf-8", "backslashreplace")
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {_json_safe(key): _json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(item) for item in value]
    return value


async def _validation_error(request: Request, error: Exception) -> JSONResponse:
    """422 naming each bad field, 400 for a body that is not JSON; counts rejected event
    batches."""
    assert isinstance(error, RequestValidationError)
    errors = error.errors()
    malformed = any(detail.get("type") == JSON_INVALID for detail in errors)
    if malformed:  # a 400; its input is the whole body, not worth echoing back
        errors = [{key: v for key, v in detail.items() if key != "input"} for detail in errors]
    if request.url.path.rstrip("/") == "/events":
        reason = "malformed" if malformed else "validation"
        request.app.state.metrics.events_rejected.labels(reason=reason).inc()
    body = {"detail": jsonable_encoder(_json_safe(errors))}
    return JSONResponse(body, status_code=400 if malformed else 422)


async def _service_error(request: Request, error: Exception) -> JSONResponse:
    """A flow's domain error as its HTTP status: the one place errors become HTTP. A conflict
    is a 422 shaped as every other (and as documented): a list of errors with loc and msg."""
    assert isinstance(error, ServiceError)
    if isinstance(error, Conflict):
        detail = [{"type": "conflict", "loc": list(error.loc), "msg": error.detail}]
        return JSONResponse({"detail": detail}, status_code=error.status)
    return JSONResponse({"detail": error.detail}, status_code=error.status)


async def _database_down(request: Request, error: Exception) -> JSONResponse:
    """503 when the database is unreachable: the client should retry; nothing was acknowledged."""
    log.warning("database unavailable: %s: %s", type(error).__name__, error)
    return JSONResponse({"detail": "database unavailable, retry later"}, status_code=503)


def _server_unavailable(error: BaseException | None) -> bool:
    """True when a driver error says the server is shutting down, starting up or gone:
    SQLSTATE class 08 (connection) or 57 (operator intervention, e.g. 57P03 "the database
    system is starting up", which SQLAlchemy wraps as a plain DBAPIError)."""
    seen = 0
    while error is not None and seen < 5:
        if str(getattr(error, "sqlstate", "") or "")[:2] in ("08", "57"):
            return True
        error = getattr(error, "orig", None) or error.__cause__
        seen += 1
    return False


async def _driver_error(request: Request, error: Exception) -> JSONResponse:
    """A driver error of no more specific kind: 503 while the server restarts, else a 500."""
    if _server_unavailable(error):
        return await _database_down(request, error)
    raise error


async def _client_gone(request: Request, error: Exception) -> JSONResponse:
    """The client left (or the body cap cut it off and 413 was sent); this answer is dropped."""
    return JSONResponse({"detail": "client disconnected"}, status_code=400)


def _document_models(app: FastAPI, **adapters: TypeAdapter[Any]) -> None:
    """Add request models that routes parse themselves to the OpenAPI components."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = build()
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        for name, adapter in adapters.items():
            model_schema = adapter.json_schema(ref_template="#/components/schemas/{model}")
            components.update(model_schema.pop("$defs", {}))
            components[name] = model_schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the service; all state lives on app.state, created in the lifespan."""
    settings = settings or get_settings()
    configure_logging(settings.log_level, json_logs=settings.log_json)
    app = FastAPI(
        title="recsys",
        version="0.1.0",
        summary="Recommendations for web shops: events in, top-k items out.",
        lifespan=_lifespan(settings),
    )
    app.state.settings = settings
    app.state.metrics = Metrics()
    app.add_middleware(
        RequestMiddleware, metrics=app.state.metrics, max_body_bytes=settings.max_body_bytes
    )
    if settings.cors_origins:  # outermost: preflights are answered before anything else runs
        app.add_middleware(CORSMiddleware, **cors_options(settings.cors_origins))
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(ClientDisconnect, _client_gone)
    app.add_exception_handler(ServiceError, _service_error)
    for error_type in DATABASE_DOWN:
        app.add_exception_handler(error_type, _database_down)
    app.add_exception_handler(sa_exc.DBAPIError, _driver_error)  # subclasses keep their own
    routers = (
        events,
        items,
        similar,
        recommend,
        compare,
        models,
        experiments,
        rules,
        users,
        health,
    )
    for module in routers:
        app.include_router(module.router)
    install_ui(app)  # the dashboard: /ui pages, their static files, the login redirect
    _document_models(app, EventBatch=EVENT_BATCH)
    return app
