"""Loaded checkpoints: validation, item vectors ready for scoring, atomic hot swap."""

from __future__ import annotations

import asyncio
import functools
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import repo
from app.domain import RETRAIN_SOURCE
from models.ann import ItemIndex
from models.base import Recommender
from models.checkpoint import CheckpointError, load_checkpoint

log = logging.getLogger(__name__)
# Computes new versions' cached states before they serve (app/serving/warmup.py).
Warm = Callable[[list["LoadedModel"]], Awaitable[None]]
# When no experiment or `model=` picks one, the first loaded of these serves.
DEFAULT_ORDER = ("sasrec", "mf", "ease", "popularity")
# Rows added after a version's index was built (new catalog items) are scored exactly until they
# pass this share of the indexed rows; then `with_items` indexes them into a copy.
INDEX_TAIL_SHARE = 1 / 32


@dataclass(frozen=True)
class AnnPolicy:
    """When a loaded version gets an approximate-retrieval index (app.serving.retrieval)."""

    min_items: int = 0  # index versions with at least this many items; 0: never
    nprobe: int = 1024  # cells scanned per query (bench/scale.py: recall on trained vectors)
    overfetch: int = 50  # candidates fetched beyond k + the masked items, re-scored exactly
    seed: int = 0  # the index's training sample and k-means


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
    # Items the checkpoint was trained on; rows past it were added since from content vectors
    # (new catalog items), scored and masked like the others but never encoded as history.
    trained_items: int = -1
    # Approximate retrieval over rows [0, index.ntotal); None: every list is scored exactly.
    # Shared read-only by this version's copies (with_items), never added to in place.
    index: ItemIndex | None = None
    overfetch: int = 0  # see AnnPolicy

    def __post_init__(self) -> None:
        if self.trained_items < 0:
            object.__setattr__(self, "trained_items", len(self.item_ids))

    def with_items(self, item_ids: list[str], vectors: torch.Tensor) -> LoadedModel:
        """A copy that also scores `item_ids` with the given vectors (N, D), same version."""
        ids = [*self.item_ids, *item_ids]
        matrix = torch.cat([self.item_vectors, vectors.to(torch.float32)]).contiguous()
        index = self.index
        if index is not None and len(ids) - index.ntotal > index.ntotal * INDEX_TAIL_SHARE:
            index = index.with_added(matrix[index.ntotal :].numpy())  # a copy: readers share it
        return replace(
            self,
            item_ids=ids,
            item_index={item: n for n, item in enumerate(ids)},
            item_vectors=matrix,
            index=index,
        )

    def with_index(self, policy: AnnPolicy) -> LoadedModel:
        """This version with an index over its item vectors when the policy asks for one (a
        dot-scored model with at least min_items items), else itself."""
        items = len(self.item_ids)
        if not policy.min_items or items < policy.min_items or not self.dot_scored:
            return self
        try:
            index = ItemIndex.build(
                self.item_vectors.numpy(), nprobe=policy.nprobe, seed=policy.seed
            )
        except (RuntimeError, ValueError) as error:  # serve exactly rather than refuse the version
            log.error("%s %s: no ANN index: %s", self.name, self.version, error)
            return self
        log.info("%s %s: ANN index of %d items", self.name, self.version, items)
        return replace(self, index=index, overfetch=policy.overfetch)

    @property
    def dim(self) -> int:
        """Width of the user and item vectors."""
        return int(self.item_vectors.shape[1])

    @property
    def dot_scored(self) -> bool:
        """True when a score is the dot product with `item_vectors`: every model except those
        that override `Recommender.score_vectors` (NeuMF scores through its network)."""
        scorer = getattr(type(self.model), "score_vectors", Recommender.score_vectors)
        return scorer is Recommender.score_vectors  # test doubles without one score by dot

    def scores(self, vectors: torch.Tensor, start: int = 0) -> torch.Tensor:
        """Scores of items [start:] for user vectors (B, D): (B, I - start), a new tensor; every
        serving score comes from here."""
        if self.dot_scored:
            return vectors @ self.item_vectors[start:].T
        with torch.inference_mode():  # no new items: such models have no `item_vectors_for`
            return self.model.score_vectors(vectors)[:, start:]

    @property
    def cache_field(self) -> str:
        """The cache key part that ties a user vector to this exact version."""
        return f"{self.name}:{self.version}"

    def indices(self, item_ids: list[str]) -> list[int]:
        """Indices of the known items, in order; unknown ids are skipped."""
        return [n for n in map(self.item_index.get, item_ids) if n is not None]

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
            "index": None if self.index is None else self._describe_index(),
        }

    def _describe_index(self) -> dict[str, Any]:
        """The index's settings and build time, and how many rows are scored beside it."""
        assert self.index is not None
        return {
            **self.index.describe(),
            "overfetch": self.overfetch,
            "exact_rows": len(self.item_ids) - self.index.ntotal,
        }


def load_version(path: Path, ann: AnnPolicy | None = None) -> LoadedModel:
    """Load and validate one checkpoint directory (raises CheckpointError); with `ann`, build
    its index when the policy asks for one."""
    checkpoint = load_checkpoint(path)
    model = checkpoint.model
    with torch.inference_mode():
        vectors = model.item_vectors().detach().to(torch.float32).contiguous()
    item_ids = checkpoint.item_ids.to_json()
    loaded = LoadedModel(
        name=str(checkpoint.meta["model"]),
        version=path.name,
        path=path,
        model=model,
        item_ids=item_ids,
        item_index={item: n for n, item in enumerate(item_ids)},
        item_vectors=vectors,
        meta=checkpoint.meta,
    )
    return loaded if ann is None else loaded.with_index(ann)


@functools.lru_cache(maxsize=4096)
def _meta_source(meta_path: Path, mtime_ns: int) -> str | None:
    """The "source" field of a meta.json (memoised per file version: the scan runs often)."""
    try:
        source = json.loads(meta_path.read_text()).get("source")
    except (OSError, ValueError):
        return None
    return source if isinstance(source, str) else None


def _disk_servable(version_dir: Path) -> bool:
    """A complete checkpoint that may be served without a model_versions row."""
    meta = version_dir / "meta.json"
    if version_dir.name.startswith(".") or not meta.is_file():
        return False
    return _meta_source(meta, meta.stat().st_mtime_ns) != RETRAIN_SOURCE


def newest_versions(model_dir: Path) -> dict[str, Path]:
    """model_dir/<name>/<version>/: the newest servable version directory of each model.

    Checkpoints made by `recsys retrain` are left out: they serve only once promoted, through
    their model_versions row.
    """
    found: dict[str, Path] = {}
    if not model_dir.is_dir():
        return found
    for name_dir in sorted(p for p in model_dir.iterdir() if p.is_dir()):
        versions = sorted(
            (p for p in name_dir.iterdir() if p.is_dir() and _disk_servable(p)),
            key=lambda p: (p.stat().st_mtime, p.name),
        )
        if versions:
            found[name_dir.name] = versions[-1]
    return found


async def wanted_versions(session: AsyncSession, model_dir: Path) -> dict[str, Path]:
    """What should serve: each model's active model_versions row, else its newest on disk."""
    wanted = newest_versions(model_dir)
    for name, row in (await repo.active_versions(session=session)).items():
        wanted[name] = Path(row.path)
    return wanted


class ModelRegistry:
    """The served versions by model name; a reload swaps the whole mapping at once."""

    def __init__(
        self, model_dir: Path, *, default_model: str | None = None, ann: AnnPolicy | None = None
    ) -> None:
        self.model_dir = model_dir
        self.default_model = default_model
        self.ann = ann
        self.models: dict[str, LoadedModel] = {}
        self.errors: dict[str, str] = {}
        # Per model, its latest warm-up's progress (app/serving/warmup.py), for /readyz.
        self.warmups: dict[str, dict[str, Any]] = {}

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

    async def reload(self, wanted: dict[str, Path], warm: Warm | None = None) -> dict[str, Any]:
        """Load the wanted versions; a version that fails to load keeps the old one serving.
        `warm` gets the new versions of models that were serving before they swap in."""
        current = self.models
        fresh: dict[str, LoadedModel] = {}
        errors: dict[str, str] = {}
        for name, path in wanted.items():
            if name in current and current[name].path == path:
                fresh[name] = current[name]
                continue
            try:
                fresh[name] = await asyncio.to_thread(load_version, path, self.ann)
            except (CheckpointError, OSError, ValueError, RuntimeError) as error:
                errors[name] = f"{path}: {error}"
                log.error("refused checkpoint %s: %s", path, error)
                if name in current:
                    fresh[name] = current[name]
        replacing = [m for n, m in fresh.items() if n in current and m is not current[n]]
        if warm is not None and replacing:
            try:
                await warm(replacing)  # app/serving/warmup.py: bounded by its deadline
            except Exception:  # a warm-up never keeps a version from serving
                log.exception("warm-up failed; swapping in cold")
        self.models, self.errors = fresh, errors  # the swap: readers see old or new, never a mix
        return {"loaded": {n: m.version for n, m in fresh.items()}, "errors": errors}

    def describe(self) -> dict[str, Any]:
        """Served versions and refused checkpoints, for /readyz."""
        return {
            "loaded": {name: m.version for name, m in self.models.items()},
            "errors": self.errors,
            "warmup": {name: dict(report) for name, report in self.warmups.items()},
        }
