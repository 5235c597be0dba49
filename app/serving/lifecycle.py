"""Start-up and background upkeep of the serving state (models, catalog, experiments)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import torch
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.cache import SafeCache
from app.config import Settings
from app.db.history import HistoryReader
from app.experiments.book import ExperimentBook
from app.experiments.exposures import ExposureLog
from app.ingest.meaning import input_types
from app.observability import Metrics
from app.privacy.erasure import ErasureSync
from app.serving.batcher import EncodeBatcher
from app.serving.catalog import Catalog
from app.serving.content import ContentIndex
from app.serving.filters import FilterIndex
from app.serving.registry import AnnPolicy, ModelRegistry, newest_versions, wanted_versions
from app.serving.services import Services
from app.serving.warmup import warm_versions

log = logging.getLogger(__name__)


async def refresh(services: Services) -> None:
    """Re-read what should serve (model_versions, disk), popular and inactive items, experiments.

    With the database down the current models keep serving; at start-up the newest
    checkpoints on disk serve until it answers.
    """
    wanted = None
    try:
        async with services.sessionmaker() as session:
            wanted = await wanted_versions(session, services.settings.model_dir)
            await services.catalog.refresh(session)
            await services.experiments.refresh(session)
            await services.rules.refresh(session)
            await services.filters.refresh(session)
            await services.content.refresh(session)
    except Exception as error:  # keep serving what we have
        log.warning("refresh from the database failed: %s", error)
    if wanted is None and not services.registry.models:
        wanted = newest_versions(services.settings.model_dir)
    if wanted is not None:
        await services.registry.reload(wanted, warm=functools.partial(warm_versions, services))
    add_catalog_items(services)


def add_catalog_items(services: Services) -> None:
    """Give each content-reading model the catalog items it was not trained on, scored from
    their content vectors, so a new item is recommendable (and has similar items) at once."""
    content, registry = services.content, services.registry
    for name, model in list(registry.models.items()):
        new = [item for item in content.item_ids if item not in model.item_index]
        trained_with = model.meta.get("content_encoder", content.version)
        if not new or not model.model.reads_content or trained_with != content.version:
            continue
        try:
            vectors = model.model.item_vectors_for(content.features_of(new))
        except (RuntimeError, ValueError) as error:  # e.g. another encoder's width
            log.error("%s %s cannot take new items: %s", name, model.version, error)
            continue
        if vectors is not None:
            registry.models = {**registry.models, name: model.with_items(new, vectors)}


async def _refresh_forever(services: Services) -> None:
    erasures = ErasureSync()  # replays failed cache drops, applies other replicas' erasures
    while True:
        await asyncio.sleep(services.settings.refresh_interval_s)
        try:
            await refresh(services)
            await erasures.tick(services)
        except Exception:
            log.exception("background refresh failed")


@asynccontextmanager
async def serving(
    settings: Settings,
    engine: AsyncEngine,
    sessionmaker: async_sessionmaker[AsyncSession],
    cache: SafeCache,
    metrics: Metrics,
) -> AsyncIterator[Services]:
    """Build the serving services, keep them fresh in the background, shut down cleanly."""
    if settings.torch_threads:
        torch.set_num_threads(settings.torch_threads)
    if settings.demo_models:
        from app.training.demo import ensure_demo

        await ensure_demo(settings, sessionmaker)
    services = Services(
        settings=settings,
        registry=ModelRegistry(
            settings.model_dir,
            default_model=settings.default_model,
            ann=AnnPolicy(settings.ann_min_items, settings.ann_nprobe, settings.ann_overfetch),
        ),
        cache=cache,
        sessionmaker=sessionmaker,
        history=HistoryReader(
            engine,
            connect_timeout_s=settings.db_connect_timeout_s,
            pool_size=settings.db_pool_size,
            # The model input is what training reads: weighted types, no negative events.
            input_types=input_types(settings.event_weights),
            negative_max=settings.rating_negative_max,
        ),
        # The popular list behind every fallback follows the same interval as the rest.
        catalog=Catalog(
            sessionmaker,
            popular_every_s=settings.refresh_interval_s,
            rating_negative_max=settings.rating_negative_max,
        ),
        experiments=ExperimentBook(),
        filters=FilterIndex(settings.filter_cache_size),
        exposures=ExposureLog(sessionmaker, metrics),
        metrics=metrics,
        content=ContentIndex(
            sessionmaker, encoder=settings.text_encoder, enabled=settings.encode_catalog
        ),
        encoder=EncodeBatcher(ranked_items=settings.ranked_items),
    )
    await services.history.start()
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
        await services.history.close()
        services.encoder.close()
        await services.content.close()
