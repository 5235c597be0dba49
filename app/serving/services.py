"""What every serving flow reads: the caller's request and the process's services."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.cache import SafeCache
from app.config import Settings
from app.db.history import HistoryReader
from app.experiments.book import ExperimentBook
from app.experiments.exposures import ExposureLog
from app.observability import Metrics
from app.serving.batcher import EncodeBatcher
from app.serving.catalog import Catalog
from app.serving.registry import ModelRegistry


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
