"""Annotated dependency aliases and key checks.

Every dependency is `async def`: FastAPI runs a plain `def` one in its thread pool, a thread
hand-off per dependency per request (four on `POST /events`, about 15% of its CPU in a profile).
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from sqlalchemy.ext.asyncio import AsyncSession

from app.cache import SafeCache
from app.config import Settings
from app.observability import Metrics
from app.serving.services import Services


async def get_settings_dep(request: Request) -> Settings:
    """The app's settings."""
    settings: Settings = request.app.state.settings
    return settings


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """One session per request, always closed."""
    async with request.app.state.sessionmaker() as session:
        yield session


async def get_cache(request: Request) -> SafeCache:
    """The app's cache."""
    cache: SafeCache = request.app.state.cache
    return cache


async def get_metrics(request: Request) -> Metrics:
    """The app's metrics."""
    metrics: Metrics = request.app.state.metrics
    return metrics


def services_of(request: Request) -> Services:
    """The serving services built in the lifespan (models, catalog, experiments, cache)."""
    services: Services = request.app.state.services
    return services


async def get_services(request: Request) -> Services:
    """`services_of` as a dependency (ServicesDep)."""
    return services_of(request)


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
SessionDep = Annotated[AsyncSession, Depends(get_session)]
CacheDep = Annotated[SafeCache, Depends(get_cache)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
ServicesDep = Annotated[Services, Depends(get_services)]


def _check_key(request: Request, expected: str | None) -> None:
    """401 without a key, 403 with a wrong one; no check when no key is configured."""
    if expected is None:
        return
    given = request.headers.get("x-api-key")
    if not given:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "missing X-API-Key header")
    if not secrets.compare_digest(given.encode(), expected.encode()):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "invalid API key")


async def require_write_key(request: Request, settings: SettingsDep) -> None:
    """Writes need the write key (the admin key works too)."""
    if settings.admin_key and request.headers.get("x-api-key") == settings.admin_key:
        return
    _check_key(request, settings.write_key)


async def require_admin_key(request: Request, settings: SettingsDep) -> None:
    """Admin calls need the admin key."""
    _check_key(request, settings.admin_key)


WriteKey = Depends(require_write_key)
AdminKey = Depends(require_admin_key)
