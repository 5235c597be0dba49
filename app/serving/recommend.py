"""The one serving flow: pick the arm, get the user's state, rank, mask, top-k, log the exposure."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import torch

from app.domain import OVERRIDE
from app.errors import NotFound, Unavailable
from app.experiments.routing import assign
from app.observability import Metrics, new_id
from app.serving.merchandise import Shape, popular_fill, shape_of
from app.serving.registry import LoadedModel
from app.serving.retrieval import count, retrieve
from app.serving.rules import Merchandising
from app.serving.services import Ask, Services
from app.serving.state import UserState, masked_ids, user_state

POPULARITY = "popularity"  # the "model" of an answer made before any model is loaded


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
    because: dict[str, list[str]] = field(default_factory=dict)  # the model's items only

    def item_dicts(self, explain: bool) -> list[dict[str, Any]]:
        """The items as answered; with `explain`, each with its "because" (backfill: [])."""
        if not explain:
            return [{"item_id": i, "score": s} for i, s in self.items]
        return [
            {"item_id": i, "score": s, "because": self.because.get(i, [])} for i, s in self.items
        ]


def choose(ask: Ask, services: Services) -> Choice:
    """Explicit model (404 if unknown), else the experiment's sticky arm, else the default."""
    registry = services.registry
    experiment_name = ask.experiment or services.settings.experiment
    experiment = services.experiments.running(experiment_name)
    if ask.model is not None:
        if ask.model not in registry.models:
            raise NotFound(f"model {ask.model!r} is not loaded; loaded: {sorted(registry.models)}")
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
        raise NoModelLoaded("no model is loaded")
    return Choice(default)


class NoModelLoaded(Unavailable):
    """No checkpoint serves yet (day one): /recommend answers from popularity instead."""


async def popular_only(ask: Ask, services: Services) -> Scored:
    """The stored events' most popular items the user has not seen, scored 1/rank: the answer
    before any model exists ("no_model"), or an empty list before any event ("no_data")."""
    started = time.perf_counter()
    rules = services.rules.compiled  # filters and boosts apply; pins need a model's list
    extra = popular_fill(services, ask.filter, rules, [], await masked_ids(ask, services), ask.k)
    fallback = "no_model" if services.catalog.popular else "no_data"
    services.metrics.fallbacks.labels(reason=fallback).inc()
    items = [(item, 1.0 / (rank + 1)) for rank, item in enumerate(extra)]
    return Scored(items, fallback, time.perf_counter() - started)


def top_k(
    model: LoadedModel,
    state: UserState,
    excluded: list[int],
    inactive: frozenset[int],
    k: int,
    metrics: Metrics | None = None,
) -> list[tuple[str, float]]:
    """From the cached ranked list when it suffices, else by ranking the whole catalog (through
    the version's ANN index when it has one; `metrics` counts which)."""
    answer = state.answer(model, inactive.union(excluded) if excluded else inactive, k)
    if answer is not None:
        return answer
    blocked = np.concatenate([state.seen, np.asarray([*excluded, *inactive], dtype=np.int64)])
    vector = torch.from_numpy(state.vector.copy())[None, :]  # (1, D)
    found = retrieve(model, vector, [blocked], k)
    if metrics is not None:
        count(metrics, model, found.from_index[0])
    [(ranked, values)] = found.lists
    item_ids = model.item_ids
    return [(item_ids[i], v) for i, v in zip(ranked.tolist(), values.tolist(), strict=True)]


async def score(ask: Ask, model: LoadedModel, services: Services) -> Scored:
    """The model's top-k for the user, backfilled from popularity; popularity for unknown users."""
    started = time.perf_counter()
    found = await user_state(ask, model, services)
    fallback, items, state = None, [], found.state
    shape = shape_of(ask, model, services)  # filters and merchandising rules; None: neither
    if state is None:
        fallback = "no_known_items" if found.history else "unknown_user"
        services.metrics.fallbacks.labels(reason=fallback).inc()
    else:
        excluded = model.indices(list(ask.exclude)) if ask.exclude else []
        inactive = services.catalog.inactive_indices(model)
        items = (
            top_k(model, state, excluded, inactive, ask.k, services.metrics)
            if shape is None
            else shape.top_k(state, excluded, inactive, ask.k)
        )
    because = await explanations(model, state, items) if ask.explain and state else {}
    if len(items) < ask.k:
        items += backfill(items, await masked_ids(ask, services, found), ask.k, services, shape)
    if shape is not None:
        items = await shape.pin(items, ask, state, found.history)
    return Scored(items, fallback, time.perf_counter() - started, because)


async def explanations(
    model: LoadedModel, state: UserState, items: list[tuple[str, float]]
) -> dict[str, list[str]]:
    """Per item of the model's list, up to 3 history items that contributed most to it
    (`Recommender.explain`: similarity, or for SASRec the history items whose removal lowers
    its score most), computed off the event loop."""
    if not items:
        return {}
    history = state.history  # what the model itself encodes
    targets = model.item_vectors[[model.item_index[item] for item, _ in items]]
    found = await asyncio.to_thread(model.model.explain, history, targets, 3)
    names = model.item_ids
    return {
        item: [names[j] for j in because] for (item, _), because in zip(items, found, strict=True)
    }


def backfill(
    items: list[tuple[str, float]],
    blocked: list[str],
    k: int,
    services: Services,
    shape: Shape | None = None,
) -> list[tuple[str, float]]:
    """Popular items to complete the list (allowed by the filter), scored below the model's."""
    chosen = [i for i, _ in items]
    extra = (
        popular_fill(services, None, Merchandising(), chosen, blocked, k)
        if shape is None
        else popular_fill(services, shape.item_filter, shape.rules, chosen, blocked, k)
    )
    if extra and items:
        services.metrics.fallbacks.labels(reason="backfill").inc()
    floor = min((s for _, s in items), default=0.0)
    return [(item, floor - 1.0 - n) for n, item in enumerate(extra)]


async def recommend(ask: Ask, services: Services) -> dict[str, Any]:
    """Answer one /recommend call and queue its exposure; the answer has the shape of
    `schemas.Recommendation`, as a dict so the route can serialise it without a model."""
    choice: Choice | None
    try:
        choice = choose(ask, services)
    except NoModelLoaded:  # day one: popularity answers until the first checkpoint loads
        choice, scored = None, await popular_only(ask, services)
    else:
        scored = await score(ask, choice.model, services)
    recommendation_id = new_id()
    name, version = (choice.model.name, choice.model.version) if choice else (POPULARITY, None)
    variant, experiment = (choice.variant, choice.experiment) if choice else (None, None)
    labels = (name, variant or "")
    metrics = services.metrics
    metrics.child(metrics.recommend_latency, *labels).observe(scored.seconds)
    metrics.child(metrics.exposures, *labels).inc()
    item_ids = [item for item, _ in scored.items]
    services.exposures.record(
        {
            "recommendation_id": recommendation_id,
            "user_id": ask.user_id,
            "model_name": name,
            "model_version": version,
            "experiment": experiment,
            "variant": variant,
            "items": {"items": item_ids},
            "created_at": datetime.now(UTC),
            "latency_ms": scored.seconds * 1000,  # the experiment report's guardrail
            "fallback": scored.fallback,
        }
    )
    return {
        "user_id": ask.user_id,
        "model": name,
        "model_version": version,
        "variant": variant,
        "experiment": experiment,
        "recommendation_id": recommendation_id,
        "fallback": scored.fallback,
        "items": scored.item_dicts(ask.explain),
    }
