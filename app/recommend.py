"""The one serving flow: pick the arm, get the user vector, score, mask, top-k, log the exposure."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import torch
from fastapi import HTTPException
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.cache import SafeCache
from app.catalog import Catalog
from app.config import Settings
from app.db import repo
from app.experiments import OVERRIDE, ExperimentBook
from app.exposures import ExposureLog
from app.observability import Metrics
from app.registry import LoadedModel, ModelRegistry
from app.routing import assign
from app.schemas import Recommendation, ScoredItem


@dataclass(frozen=True)
class Ask:
    """What a caller asked for."""

    user_id: str
    k: int = 10
    model: str | None = None
    experiment: str | None = None
    exclude: tuple[str, ...] = ()
    history: tuple[str, ...] | None = None  # anonymous session: replaces the stored history


@dataclass
class Services:
    """Everything the flow reads: built once in the lifespan, shared by requests."""

    settings: Settings
    registry: ModelRegistry
    cache: SafeCache
    sessionmaker: async_sessionmaker[AsyncSession]
    catalog: Catalog
    experiments: ExperimentBook
    exposures: ExposureLog
    metrics: Metrics


@dataclass
class Choice:
    """The model that answers and why."""

    model: LoadedModel
    variant: str | None = None
    experiment: str | None = None


@dataclass
class Scored:
    """A model's list before it becomes a response."""

    items: list[tuple[str, float]]
    fallback: str | None = None
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


def choose(ask: Ask, services: Services) -> Choice:
    """Explicit model (404 if unknown), else the experiment's sticky arm, else the default."""
    registry = services.registry
    experiment_name = ask.experiment or services.settings.experiment
    experiment = services.experiments.running(experiment_name)
    if ask.model is not None:
        if ask.model not in registry.models:
            raise HTTPException(
                404, f"model {ask.model!r} is not loaded; loaded: {sorted(registry.models)}"
            )
        return Choice(
            registry.models[ask.model],
            OVERRIDE if experiment else None,
            experiment.name if experiment else None,
        )
    if experiment is not None:
        arm = assign(experiment.arms, experiment.salt, ask.user_id)
        if arm.model in registry.models:
            return Choice(registry.models[arm.model], arm.name, experiment.name)
    default = registry.default()
    if default is None:
        raise HTTPException(503, "no model is loaded")
    return Choice(default)


async def user_history(ask: Ask, cached: list[str] | None, services: Services) -> list[str]:
    """The caller's history, else the cached list, else the database (then cached)."""
    if ask.history is not None:
        return list(ask.history)
    if cached is not None:
        return cached
    async with services.sessionmaker() as session:
        history = await repo.user_history(
            session=session, user_id=ask.user_id, limit=services.settings.history_len
        )
    if history:
        await services.cache.run("set_history", ask.user_id, history)
    return history


async def user_vector(
    ask: Ask, model: LoadedModel, indices: list[int], cached: bytes | None, services: Services
) -> torch.Tensor:
    """The cached vector of this model version, else computed from the history (then cached)."""
    metrics = services.metrics
    if cached is not None and ask.history is None:
        vector = np.frombuffer(cached, dtype=np.float32)
        if vector.shape[0] == model.item_vectors.shape[1]:
            metrics.cache_lookups.labels(result="hit").inc()
            return torch.from_numpy(vector.copy())
    metrics.cache_lookups.labels(result="miss").inc()
    with torch.inference_mode():
        vector_t = model.model.user_vectors([np.asarray(indices, dtype=np.int64)])[0]
    vector_t = vector_t.to(torch.float32).contiguous()
    if ask.history is None:
        await services.cache.run(
            "set_vector", ask.user_id, model.cache_field, vector_t.numpy().tobytes()
        )
    return vector_t


def top_k(
    model: LoadedModel, vector: torch.Tensor, blocked: list[int], inactive: torch.Tensor, k: int
) -> list[tuple[str, float]]:
    """One matrix-vector product, masking, torch.topk; -inf entries (masked) are dropped."""
    with torch.inference_mode():
        scores = model.item_vectors @ vector  # (I,)
        if blocked:
            scores[torch.tensor(blocked, dtype=torch.long)] = float("-inf")
        if inactive.numel():
            scores[inactive] = float("-inf")
        top = torch.topk(scores, k=min(k, scores.shape[0]))
    ids, values = top.indices.tolist(), top.values.tolist()
    return [(model.item_ids[i], v) for i, v in zip(ids, values, strict=True) if v != float("-inf")]


async def score(ask: Ask, model: LoadedModel, services: Services) -> Scored:
    """The model's top-k for the user, backfilled from popularity; popularity for unknown users."""
    started = time.perf_counter()
    cached_history, cached_vector = (None, None)
    if ask.history is None:
        cached_history, cached_vector = await services.cache.get_state(
            ask.user_id, model.cache_field
        )
    history = await user_history(ask, cached_history, services)
    indices = model.indices(history)
    blocked_ids = [*history, *ask.exclude]
    fallback = None
    if not indices:
        items: list[tuple[str, float]] = []
        fallback = "unknown_user" if not history else "no_known_items"
        services.metrics.fallbacks.labels(reason=fallback).inc()
    else:
        vector = await user_vector(ask, model, indices, cached_vector, services)
        blocked = indices + model.indices(list(ask.exclude))
        items = top_k(model, vector, blocked, services.catalog.inactive_indices(model), ask.k)
    if len(items) < ask.k:
        extra = services.catalog.backfill([i for i, _ in items], blocked_ids, ask.k)
        if extra and items:
            services.metrics.fallbacks.labels(reason="backfill").inc()
        floor = min((s for _, s in items), default=0.0)
        items += [
            (item, floor - 1.0 - n) for n, item in enumerate(extra)
        ]  # ranked below the model's
    return Scored(items, fallback, time.perf_counter() - started)


async def recommend(ask: Ask, services: Services) -> Recommendation:
    """Answer one /recommend call and queue its exposure."""
    choice = choose(ask, services)
    scored = await score(ask, choice.model, services)
    recommendation_id = uuid.uuid4().hex
    model = choice.model
    services.metrics.recommend_latency.labels(
        model=model.name, variant=choice.variant or ""
    ).observe(scored.seconds)
    services.metrics.exposures.labels(model=model.name, variant=choice.variant or "").inc()
    services.exposures.record(
        {
            "recommendation_id": recommendation_id,
            "user_id": ask.user_id,
            "model_name": model.name,
            "model_version": model.version,
            "experiment": choice.experiment,
            "variant": choice.variant,
            "items": {"items": [item for item, _ in scored.items]},
            "created_at": datetime.now(UTC),
        }
    )
    return Recommendation(
        user_id=ask.user_id,
        model=model.name,
        model_version=model.version,
        variant=choice.variant,
        experiment=choice.experiment,
        recommendation_id=recommendation_id,
        fallback=scored.fallback,
        items=[ScoredItem(item_id=i, score=s) for i, s in scored.items],
    )
