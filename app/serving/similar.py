"""Similar items for a product page: the nearest active items by a model's item vectors, or by
the catalog's content vectors when the model does not know the item."""

from __future__ import annotations

from typing import Any

import numpy as np

from app.errors import NotFound
from app.serving.filters import ItemFilter
from app.serving.registry import LoadedModel
from app.serving.scoring import nearest
from app.serving.services import Services

CONTENT = "content"  # the "model" of an answer from the catalog's content vectors


def _model_of(name: str | None, services: Services) -> LoadedModel | None:
    """The named model (NotFound when not loaded), else the default one."""
    registry = services.registry
    if name is None:
        return registry.default()
    if name not in registry.models:
        raise NotFound(f"model {name!r} is not loaded; loaded: {sorted(registry.models)}")
    return registry.models[name]


def _from_model(
    model: LoadedModel, item_id: str, k: int, services: Services, item_filter: ItemFilter | None
) -> list[tuple[str, float]]:
    """Nearest items by the model's own item vectors, inactive ones (and those the filter
    refuses) left out (cached)."""
    catalog = services.catalog
    key: tuple[object, ...] = (
        model.cache_field,
        len(model.item_ids),
        catalog.generation,
        item_id,
        k,
    )
    if item_filter is not None:
        key = (*key, item_filter, services.filters.generation)
    found = services.similar.get(key)
    if found is None:
        inactive = np.fromiter(catalog.inactive_indices(model), dtype=np.int64)
        if item_filter is not None:
            space = (model.cache_field, len(model.item_ids))
            refused = ~services.filters.mask(space, model.item_ids, item_filter)
            inactive = np.concatenate([inactive, np.flatnonzero(refused)])
        index = model.item_index[item_id]
        found = nearest(model.item_ids, model.item_vectors, index, inactive, k)
        services.similar.put(key, found)
    return found


def _from_content(
    item_id: str, k: int, services: Services, item_filter: ItemFilter | None
) -> list[tuple[str, float]]:
    """Nearest items by content vectors, inactive ones (and those the filter refuses) left out."""
    content = services.content
    if item_filter is None:
        return content.similar(item_id, k, services.catalog.inactive)
    refused = ~services.filters.mask(None, content.item_ids, item_filter)
    blocked = np.flatnonzero(refused)  # the filter's mask holds active items only
    return nearest(content.item_ids, content.vectors, content.item_index[item_id], blocked, k)


def similar_items(
    item_id: str,
    k: int,
    model_name: str | None,
    services: Services,
    item_filter: ItemFilter | None = None,
) -> dict[str, Any]:
    """The answer of GET /items/{item_id}/similar."""
    model = _model_of(model_name, services)
    name: str
    version: str | None
    if model is not None and item_id in model.item_index:
        items = _from_model(model, item_id, k, services, item_filter)
        name, version = model.name, model.version
    else:
        content = services.content
        if item_id not in content.item_index:
            raise NotFound(f"item {item_id!r} is known to neither the model nor the catalog")
        items = _from_content(item_id, k, services, item_filter)
        name, version = CONTENT, content.version
    return {
        "item_id": item_id,
        "model": name,
        "model_version": version,
        "items": [{"item_id": i, "score": s} for i, s in items],
    }
