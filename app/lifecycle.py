"""Start-up and background upkeep of the serving state (models, catalog, experiments)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import torch
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.cache import SafeCache
from app.catalog import Catalog
from app.config import Settings
from app.experiments import ExperimentBook
from app.exposures import ExposureLog
from app.observability import Metrics
from app.recommend import Services
from app.registry import ModelRegistry

log = logging.getLogger(__name__)


async def refresh(services: Services, *, models: bool = True) -> None:
    """Re-read models on disk, popular and inactive items, experiments; failures only log."""
    if models:
        await services.registry.reload()
    try:
        async with services.sessionmaker() as session:
            await services.catalog.refresh(session)
            await services.experiments.refresh(session)
    except Exception as error:  # the database may be down: keep serving what we have
        log.warning("refresh from the database failed: %s", error)


async def _refresh_forever(services: Services) -> None:
    while True:
        await asyncio.sleep(services.settings.refresh_interval_s)
        try:
            await refresh(services)
        except Exception:
            log.exception("background refresh failed")


@asynccontextmanager
async def serving(
    settings: Settings,
    sessionmaker: async_sessionmaker[AsyncSession],
    cache: SafeCache,
    metrics: Metrics,
) -> AsyncIterator[Services]:
    """Build the serving services, keep them fresh in the background, shut down cleanly."""
    if settings.torch_threads:
        torch.set_num_threads(settings.torch_threads)
    if settings.demo_models:
        from app.demo import ensure_demo

        await ensure_demo(settings, sessionmaker)
    services = Services(
        settings=settings,
        registry=ModelRegistry(settings.model_dir, default_model=settings.default_model),
        cache=cache,
        sessionmaker=sessionmaker,
        catalog=Catalog(sessionmaker),
        experiments=ExperimentBook(),
        exposures=ExposureLog(sessionmaker, metrics),
        metrics=metrics,
    )
    await refresh(services)
    services.exposures.start()
    upkeep = asyncio.create_task(_refresh_forever(services), name="refresh")
    try:
        yield services
    finally:
        upkeep.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await upkeep
        await services.exposures.stop()
