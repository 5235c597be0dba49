"""Loaded checkpoints: validation, item vectors ready for scoring, atomic hot swap."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from models.base import Recommender
from models.checkpoint import CheckpointError, load_checkpoint

log = logging.getLogger(__name__)
# When no experiment or `model=` picks one, the first loaded of these serves.
DEFAULT_ORDER = ("sasrec", "mf", "ease", "popularity")


@dataclass(frozen=True)
class LoadedModel:
    """One servable checkpoint version."""

    name: str
    version: str
    path: Path
    model: Recommender
    item_ids: list[str]
    item_index: dict[str, int]
    item_vectors: torch.Tensor  # (I, D) contiguous float32
    meta: dict[str, Any]
    loaded_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def cache_field(self) -> str:
        """The cache key part that ties a user vector to this exact version."""
        return f"{self.name}:{self.version}"

    def indices(self, item_ids: list[str]) -> list[int]:
        """Indices of the known items, in order; unknown ids are skipped."""
        index = self.item_index
        return [index[i] for i in item_ids if i in index]

    def offline_metrics(self) -> dict[str, Any]:
        """The checkpoint's validation and test metrics."""
        metrics: dict[str, Any] = self.meta.get("metrics") or {}
        return metrics

    def describe(self) -> dict[str, Any]:
        """Metadata for /models and /readyz."""
        return {
            "name": self.name,
            "version": self.version,
            "path": str(self.path),
            "items": len(self.item_ids),
            "dim": int(self.item_vectors.shape[1]),
            "parameters": self.meta.get("parameters"),
            "created_at": self.meta.get("created_at"),
            "loaded_at": self.loaded_at.isoformat(timespec="seconds"),
            "train_seconds": self.meta.get("train_seconds"),
            "data": self.meta.get("data"),
            "metrics": self.offline_metrics(),
            "config": self.meta.get("config"),
        }


def load_version(path: Path) -> LoadedModel:
    """Load and validate one checkpoint directory (raises CheckpointError)."""
    checkpoint = load_checkpoint(path)
    model = checkpoint.model
    with torch.inference_mode():
        vectors = model.item_vectors().detach().to(torch.float32).contiguous()
    item_ids = checkpoint.item_ids.to_json()
    return LoadedModel(
        name=str(checkpoint.meta["model"]),
        version=path.name,
        path=path,
        model=model,
        item_ids=item_ids,
        item_index={item: n for n, item in enumerate(item_ids)},
        item_vectors=vectors,
        meta=checkpoint.meta,
    )


def newest_versions(model_dir: Path) -> dict[str, Path]:
    """model_dir/<name>/<version>/meta.json: the newest version directory of each model."""
    found: dict[str, Path] = {}
    if not model_dir.is_dir():
        return found
    for name_dir in sorted(p for p in model_dir.iterdir() if p.is_dir()):
        versions = sorted(
            (
                p
                for p in name_dir.iterdir()
                if (p / "meta.json").is_file() and not p.name.startswith(".")
            ),
            key=lambda p: (p.stat().st_mtime, p.name),
        )
        if versions:
            found[name_dir.name] = versions[-1]
    return found


class ModelRegistry:
    """The served versions by model name; a reload swaps the whole mapping at once."""

    def __init__(self, model_dir: Path, *, default_model: str | None = None) -> None:
        self.model_dir = model_dir
        self.default_model = default_model
        self.models: dict[str, LoadedModel] = {}
        self.errors: dict[str, str] = {}

    def get(self, name: str) -> LoadedModel:
        """The served version of `name` (KeyError when not loaded)."""
        return self.models[name]

    def default(self) -> LoadedModel | None:
        """The model that serves when nothing else decides."""
        models = self.models
        if self.default_model and self.default_model in models:
            return models[self.default_model]
        for name in DEFAULT_ORDER:
            if name in models:
                return models[name]
        return next(iter(models.values()), None)

    async def reload(self, wanted: dict[str, Path] | None = None) -> dict[str, Any]:
        """Load the wanted versions (default: newest on disk); a failing one keeps the old."""
        wanted = newest_versions(self.model_dir) if wanted is None else wanted
        current = self.models
        fresh: dict[str, LoadedModel] = {}
        errors: dict[str, str] = {}
        for name, path in wanted.items():
            if name in current and current[name].path == path:
                fresh[name] = current[name]
                continue
            try:
                fresh[name] = await asyncio.to_thread(load_version, path)
            except (CheckpointError, OSError, ValueError, RuntimeError) as error:
                errors[name] = f"{path}: {error}"
                log.error("refused checkpoint %s: %s", path, error)
                if name in current:
                    fresh[name] = current[name]
        self.models, self.errors = fresh, errors  # the swap: readers see old or new, never a mix
        return {"loaded": {n: m.version for n, m in fresh.items()}, "errors": errors}

    def describe(self) -> dict[str, Any]:
        """Served versions and refused checkpoints, for /readyz."""
        return {
            "loaded": {name: m.version for name, m in self.models.items()},
            "errors": self.errors,
        }
