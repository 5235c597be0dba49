"""Side-by-side comparison: each model's list for a user, and how much the lists agree."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

from app.errors import NotFound
from app.serving.recommend import score
from app.serving.services import Ask, Services


def jaccard(a: Sequence[str], b: Sequence[str]) -> float:
    """|A ∩ B| / |A ∪ B| of two top-k lists (1.0 for two empty lists)."""
    union = set(a) | set(b)
    return len(set(a) & set(b)) / len(union) if union else 1.0


def rank_biased_overlap(a: Sequence[str], b: Sequence[str], p: float = 0.9) -> float:
    """Extrapolated RBO (Webber et al. 2010, eq. 32) of two rankings; 1.0 when identical."""
    depth = min(len(a), len(b))
    if depth == 0:
        return 1.0 if len(a) == len(b) else 0.0
    seen_a: set[str] = set()
    seen_b: set[str] = set()
    overlap, total = 0, 0.0
    for d in range(1, depth + 1):
        x, y = a[d - 1], b[d - 1]
        overlap += (x == y) + (x in seen_b) + (y in seen_a)
        seen_a.add(x)
        seen_b.add(y)
        total += overlap / d * p**d
    return overlap / depth * p**depth + (1 - p) / p * total


async def compare_models(ask: Ask, names: list[str] | None, services: Services) -> dict[str, Any]:
    """Each model's list with its latency, version and offline metrics, plus pairwise overlap."""
    registry = services.registry
    names = names or sorted(registry.models)
    unknown = [n for n in names if n not in registry.models]
    if unknown:
        raise NotFound(f"models not loaded: {unknown}; loaded: {sorted(registry.models)}")
    lists: dict[str, list[str]] = {}
    results = []
    for name in names:
        model = registry.models[name]
        scored = await score(ask, model, services)
        lists[name] = [item for item, _ in scored.items]
        results.append(
            {
                "model": name,
                "model_version": model.version,
                "latency_ms": round(scored.seconds * 1000, 3),
                "fallback": scored.fallback,
                "offline_metrics": model.offline_metrics(),
                "items": scored.item_dicts(explain=True),
            }
        )
    overlap = [
        {
            "a": a,
            "b": b,
            "jaccard": jaccard(lists[a], lists[b]),
            "rbo": rank_biased_overlap(lists[a], lists[b]),
        }
        for a, b in itertools.combinations(names, 2)
    ]
    return {"user_id": ask.user_id, "k": ask.k, "models": results, "overlap": overlap}


def offline_table(services: Services) -> dict[str, Any]:
    """The offline metrics every loaded checkpoint was saved with."""
    rows = []
    for name, model in sorted(services.registry.models.items()):
        metrics = model.offline_metrics()
        rows.append(
            {
                "model": name,
                "model_version": model.version,
                "val": metrics.get("val"),
                "test": metrics.get("test"),
                "train_seconds": model.meta.get("train_seconds"),
                "parameters": model.meta.get("parameters"),
                "data": model.meta.get("data"),
            }
        )
    return {"models": rows}
