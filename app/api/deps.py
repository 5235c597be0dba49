"""Annotated dependency aliases and key checks.

Every dependency is `async def`: FastAPI runs a plain `def` one in its thread pool, a thread
hand-off per dependency per request (four on `POST /events`, about 15% of its CPU in a profile).
"""

from __future__ import annotations

import hmac
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


def _key_matches(given: str, keys: tuple[str | None, ...]) -> bool:
    """Whether `given` is one of the configured keys; every comparison is constant-time (and
    all are made), so the answer's timing does not tell how much of a key was right."""
    found = False
    for key in keys:
        if key and hmac.compare_digest(given.encode(), key.encode()):
            found = True
    return found


def check_key(request: Request, name: str, own: str | None, *also: str | None) -> None:
    """401 without a key, 403 with a wrong one, both naming the key the call needs; no check
    when the call's own key is unset (an empty value counts as unset, as compose passes it)."""
    if not own:
        return
    given = request.headers.get("x-api-key")
    needs = f"this call needs the {name} key (RECSYS_{name.upper()}_KEY)"
    if not given:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, f"missing X-API-Key header: {needs}")
    if not _key_matches(given, (own, *also)):
        raise HTTPException(status.HTTP_403_FORBIDDEN, f"invalid API key: {needs}")


def check_read_key(request: Request) -> None:
    """Reads need the read key when one is set; the write and admin keys, more powerful, pass
    too. A plain function, so the /recommend hot path can call it without a dependency."""
    settings: Settings = request.app.state.settings
    if settings.read_key:
        check_key(request, "read", settings.read_key, settings.write_key, settings.admin_key)


def is_admin(request: Request, settings: Settings) -> bool:
    """Whether the request carries the admin key (always false when none is set)."""
    given = request.headers.get("x-api-key")
    return bool(given) and _key_matches(given or "", (settings.admin_key,))


async def require_read_key(request: Request) -> None:
    """`check_read_key` as a dependency (ReadKey)."""
    check_read_key(request)


async def require_write_key(request: Request, settings: SettingsDep) -> None:
    """Writes need the write key (the admin key works too)."""
    check_key(request, "write", settings.write_key, settings.admin_key)


async def require_admin_key(request: Request, settings: SettingsDep) -> None:
    """Admin calls need the admin key."""
    check_key(request, "admin", settings.admin_key)


async def require_metrics_key(request: Request, settings: SettingsDep) -> None:
    """/metrics needs the metrics key when one is set (the admin key works too)."""
    check_key(request, "metrics", settings.metrics_key, settings.admin_key)


ReadKey = Depends(require_read_key)
WriteKey = Depends(require_write_key)
AdminKey = Depends(require_admin_key)
MetricsKey = Depends(require_metrics_key)
