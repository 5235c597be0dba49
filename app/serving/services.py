"""What every serving flow reads: the caller's request and the process's services."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.cache import SafeCache
from app.config import Settings
from app.db.history import HistoryReader
from app.experiments.book import ExperimentBook
from app.experiments.exposures import ExposureLog
from app.observability import Metrics
from app.serving.batcher import EncodeBatcher
from app.serving.catalog import Catalog
from app.serving.content import ContentIndex
from app.serving.filters import FilterIndex, ItemFilter
from app.serving.registry import ModelRegistry
from app.serving.rules import RuleBook


class SimilarCache:
    """Answered lists by (model version and size, catalog generation, item, k): an LRU."""

    def __init__(self, size: int = 10_000) -> None:
        self.size, self.lists = size, OrderedDict[tuple[Any, ...], list[tuple[str, float]]]()

    def get(self, key: tuple[Any, ...]) -> list[tuple[str, float]] | None:
        """A cached list, refreshed as recently used."""
        found = self.lists.get(key)
        if found is not None:
            self.lists.move_to_end(key)
        return found

    def put(self, key: tuple[Any, ...], items: list[tuple[str, float]]) -> None:
        """Cache a list, evicting the least recently used beyond the size."""
        self.lists[key] = items
        if len(self.lists) > self.size:
            self.lists.popitem(last=False)


@dataclass(frozen=True)
class Ask:
    """What a caller asked for."""

    user_id: str
    k: int = 10
    model: str | None = None
    experiment: str | None = None
    exclude: tuple[str, ...] = ()
    history: tuple[str, ...] | None = None  # anonymous session: replaces the stored history
    times: tuple[int, ...] | None = None  # its items' event times (epoch seconds), when given
    explain: bool = False  # each item of the model's list says which history items led to it
    # Seen items may come back (consumables); None: the setting allow_repeats decides.
    repeats: bool | None = None
    filter: ItemFilter | None = None  # categories, attributes, price the items must match


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
    content: ContentIndex
    encoder: EncodeBatcher = field(default_factory=EncodeBatcher)
    similar: SimilarCache = field(default_factory=SimilarCache)
    filters: FilterIndex = field(default_factory=FilterIndex)  # the catalog's filter facts
    rules: RuleBook = field(default_factory=RuleBook)  # merchandising rules, compiled

    def __post_init__(self) -> None:
        self.encoder.on_batch = self.metrics.encode_batch.observe
