"""The one serving flow: pick the arm, get the user vector, score, mask, top-k, log the exposure."""

from __future__ import annotations

import struct
import time
from collections.abc import Set
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import torch
from fastapi import HTTPException
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.cache import SafeCache
from app.config import Settings
from app.db.history import HistoryReader
from app.experiments.book import OVERRIDE, ExperimentBook
from app.experiments.exposures import ExposureLog
from app.experiments.routing import assign
from app.observability import Metrics, new_id
from app.serving.batcher import EncodeBatcher
from app.serving.catalog import Catalog
from app.serving.registry import LoadedModel, ModelRegistry
from app.serving.scoring import rank_rows


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
    history: HistoryReader  # the hot path's one database read
    catalog: Catalog
    experiments: ExperimentBook
    exposures: ExposureLog
    metrics: Metrics
    encoder: EncodeBatcher = field(default_factory=EncodeBatcher)

    def __post_init__(self) -> None:
        self.encoder.on_batch = self.metrics.encode_batch.observe


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


@dataclass(frozen=True)
class UserState:
    """What scoring needs about a user for one model version, cached as one blob so a warm
    request is a single cache read: the vector, the history items the model knows, and the
    model's best unseen items (an exact top-`limit` list most requests are answered from)."""

    vector: np.ndarray  # (D,) float32
    seen: np.ndarray  # (n,) integer item indices, to mask
    ranked: np.ndarray  # (m,) item indices, best first, seen items left out
    ranked_scores: np.ndarray  # (m,) float32
    limit: int  # the list's requested length: m < limit means every unseen item is in it

    def pack(self) -> bytes:
        """<dim, n, m, limit: int32><vector f32 x dim><seen i32 x n><ranked i32 x m><f32 x m>."""
        header = struct.pack(
            "<iiii", len(self.vector), len(self.seen), len(self.ranked), self.limit
        )
        return b"".join(
            (
                header,
                self.vector.astype("<f4").tobytes(),
                self.seen.astype("<i4").tobytes(),
                self.ranked.astype("<i4").tobytes(),
                self.ranked_scores.astype("<f4").tobytes(),
            )
        )

    @classmethod
    def unpack(cls, blob: bytes, dim: int) -> UserState | None:
        """The state, or None when the blob does not fit this model (stale or foreign)."""
        if len(blob) < 16:
            return None
        d, n, m, limit = struct.unpack_from("<iiii", blob)
        if d != dim or len(blob) != 16 + 4 * (d + n + 2 * m):
            return None
        # Views into the blob, no copies: a warm request reads only the first few ranked items.
        seen_at = 16 + 4 * d
        ranked_at = seen_at + 4 * n
        return cls(
            vector=np.frombuffer(blob, "<f4", d, 16),
            seen=np.frombuffer(blob, "<i4", n, seen_at),
            ranked=np.frombuffer(blob, "<i4", m, ranked_at),
            ranked_scores=np.frombuffer(blob, "<f4", m, ranked_at + 4 * m),
            limit=limit,
        )

    def answer(
        self, model: LoadedModel, blocked: Set[int], k: int
    ) -> list[tuple[str, float]] | None:
        """The top k from the ranked list without the blocked items, or None when the list runs
        out before k and does not hold every unseen item (the caller scores the catalog)."""
        out: list[tuple[str, float]] = []
        item_ids = model.item_ids
        # Only the first k + len(blocked) entries can be needed: at most len(blocked) are skipped.
        head = k + len(blocked)
        ranked, scores = self.ranked[:head].tolist(), self.ranked_scores[:head].tolist()
        for index, value in zip(ranked, scores, strict=True):
            if index not in blocked:
                out.append((item_ids[index], value))
                if len(out) == k:
                    return out
        return out if len(self.ranked) < self.limit else None


async def database_history(user_id: str, services: Services) -> list[str]:
    """The user's latest events from the database, oldest first."""
    return await services.history(user_id, services.settings.history_len)


async def stored_history(ask: Ask, services: Services) -> list[str]:
    """The caller's history, else the cached list, else the database."""
    if ask.history is not None:
        return list(ask.history)
    cached = await services.cache.get_history(ask.user_id)
    return cached if cached is not None else await database_history(ask.user_id, services)


@dataclass
class Found:
    """A user's state for one model, and the history it came from when it had to be built."""

    state: UserState | None
    history: list[str] | None = None


async def user_state(ask: Ask, model: LoadedModel, services: Services) -> Found:
    """The cached state (one cache round trip), else one built from the history: the caller's,
    the cached list, or the database. A built state is cached unless events arrived meanwhile;
    anonymous histories are never cached."""
    if ask.history is not None:
        history = list(ask.history)
        return Found(await encode(model, history, services), history)
    seen = await services.cache.lookup(ask.user_id, model.cache_field)
    state = None if seen.vector is None else UserState.unpack(seen.vector, model.dim)
    metrics = services.metrics
    metrics.child(metrics.cache_lookups, "miss" if state is None else "hit").inc()
    if state is not None:
        return Found(state)
    loaded = seen.history is None
    history = (
        seen.history if seen.history is not None else await database_history(ask.user_id, services)
    )
    state = await encode(model, history, services)
    if state is not None or (loaded and history):
        vector = None if state is None else state.pack()
        await services.cache.store(
            ask.user_id, model.cache_field, seen, vector, history if loaded else None
        )
    return Found(state, history)


async def encode(model: LoadedModel, history: list[str], services: Services) -> UserState | None:
    """The model's vector of a history (SASRec's encoder, MF's fold-in) and its ranked list;
    None when the model knows none of the history's items."""
    indices = np.asarray(model.indices(history), dtype=np.int64)
    if not len(indices):
        return None
    encoded = await services.encoder.encode(model, indices)
    limit = services.encoder.ranked_items
    return UserState(encoded.vector.numpy(), indices, encoded.ranked, encoded.scores, limit)


def top_k(
    model: LoadedModel, state: UserState, excluded: list[int], inactive: frozenset[int], k: int
) -> list[tuple[str, float]]:
    """From the cached ranked list when it suffices, else by scoring the whole catalog."""
    answer = state.answer(model, inactive.union(excluded) if excluded else inactive, k)
    if answer is not None:
        return answer
    blocked = np.concatenate([state.seen, np.asarray([*excluded, *inactive], dtype=np.int64)])
    vector = torch.from_numpy(state.vector.copy())[None, :]  # (1, D)
    [(ranked, values)] = rank_rows(model.item_vectors, vector, [blocked], k)
    item_ids = model.item_ids
    return [(item_ids[i], v) for i, v in zip(ranked.tolist(), values.tolist(), strict=True)]


async def score(ask: Ask, model: LoadedModel, services: Services) -> Scored:
    """The model's top-k for the user, backfilled from popularity; popularity for unknown users."""
    started = time.perf_counter()
    found = await user_state(ask, model, services)
    fallback, items, state = None, [], found.state
    if state is None:
        fallback = "no_known_items" if found.history else "unknown_user"
        services.metrics.fallbacks.labels(reason=fallback).inc()
    else:
        excluded = model.indices(list(ask.exclude)) if ask.exclude else []
        inactive = services.catalog.inactive_indices(model)
        items = top_k(model, state, excluded, inactive, ask.k)
    if len(items) < ask.k:
        history = await stored_history(ask, services) if found.history is None else found.history
        items += backfill(items, [*history, *ask.exclude], ask.k, services)
    return Scored(items, fallback, time.perf_counter() - started)


def backfill(
    items: list[tuple[str, float]], blocked: list[str], k: int, services: Services
) -> list[tuple[str, float]]:
    """Popular items to complete the list, scored below the model's own."""
    extra = services.catalog.backfill([i for i, _ in items], blocked, k)
    if extra and items:
        services.metrics.fallbacks.labels(reason="backfill").inc()
    floor = min((s for _, s in items), default=0.0)
    return [(item, floor - 1.0 - n) for n, item in enumerate(extra)]


async def recommend(ask: Ask, services: Services) -> dict[str, Any]:
    """Answer one /recommend call and queue its exposure; the answer has the shape of
    `schemas.Recommendation`, as a dict so the route can serialise it without a model."""
    choice = choose(ask, services)
    scored = await score(ask, choice.model, services)
    recommendation_id = new_id()
    model, variant = choice.model, choice.variant
    labels = (model.name, variant or "")
    metrics = services.metrics
    metrics.child(metrics.recommend_latency, *labels).observe(scored.seconds)
    metrics.child(metrics.exposures, *labels).inc()
    item_ids = [item for item, _ in scored.items]
    services.exposures.record(
        {
            "recommendation_id": recommendation_id,
            "user_id": ask.user_id,
            "model_name": model.name,
            "model_version": model.version,
            "experiment": choice.experiment,
            "variant": variant,
            "items": {"items": item_ids},
            "created_at": datetime.now(UTC),
        }
    )
    return {
        "user_id": ask.user_id,
        "model": model.name,
        "model_version": model.version,
        "variant": variant,
        "experiment": choice.experiment,
        "recommendation_id": recommendation_id,
        "fallback": scored.fallback,
        "items": [{"item_id": i, "score": s} for i, s in scored.items],
    }
