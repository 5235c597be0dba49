"""Probes and metrics: /healthz, /readyz, /metrics."""

import asyncio

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from app.api.deps import CacheDep, MetricsDep, MetricsKey, ServicesDep, SettingsDep
from app.api.paths import public_errors
from app.db import repo
from app.schemas import Health, LoadedModels, Readiness
from app.serving.services import Services

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health)
async def healthz() -> Health:
    """Alive: the process answers."""
    return Health()


async def database_state(services: Services, timeout_s: float) -> str:
    """'ok' when a round trip succeeds within the timeout, else 'unavailable'."""
    try:
        async with services.sessionmaker() as session:
            await asyncio.wait_for(repo.ping(session=session), timeout_s)
    except Exception:
        return "unavailable"
    return "ok"


@router.get("/readyz", response_model=Readiness, responses={503: {"model": Readiness}})
async def readyz(services: ServicesDep, cache: CacheDep, settings: SettingsDep) -> JSONResponse:
    """Ready when the database answers; a cache outage only degrades."""
    database = await database_state(services, settings.db_connect_timeout_s)
    cache_state = await cache.status()
    registry = services.registry
    degraded = cache_state != "ok" or not registry.models
    overall = "unavailable" if database != "ok" else ("degraded" if degraded else "ok")
    described = registry.describe()  # an open probe: refused checkpoints without their paths
    described["errors"] = public_errors(described["errors"])
    models = LoadedModels.model_validate(described)
    body = Readiness(status=overall, database=database, cache=cache_state, models=models)
    return JSONResponse(body.model_dump(), status_code=503 if database != "ok" else 200)


@router.get("/metrics", include_in_schema=False, dependencies=[MetricsKey])
async def metrics(metrics: MetricsDep) -> Response:
    """Prometheus text exposition."""
    return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)
