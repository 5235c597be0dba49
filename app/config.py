"""Settings: the one place the environment is read (prefix RECSYS_, a .env file works too)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from app.domain import EVENT_TYPES, NEGATIVE_TYPES
from models.data import default_data_dir

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def _existing_data_dir() -> Path | None:
    """The library's default dataset root (../shared/datasets) when it exists, else none."""
    candidate = default_data_dir()
    return candidate if candidate.is_dir() else None


class Settings(BaseSettings):
    """Service configuration."""

    model_config = SettingsConfigDict(env_prefix="RECSYS_", env_file=".env", extra="ignore")

    database_url: str = "sqlite+aiosqlite:///./var/recsys.db"
    # Unset: an in-process LRU cache (the embedded default, no server needed).
    redis_url: str | None = None
    # Prefix for every Redis key, so several deployments (or test runs) can share one server.
    redis_prefix: str = "recsys:"
    write_key: str | None = None
    admin_key: str | None = None
    model_dir: Path = Path("./var/models")
    data_dir: Path | None = Field(default_factory=_existing_data_dir)

    max_events_per_batch: int = Field(default=10_000, ge=1)
    max_items_per_batch: int = Field(default=10_000, ge=1)
    # Request bodies over this many bytes get 413 before they are parsed.
    max_body_bytes: int = Field(default=8 * 1024 * 1024, ge=1024)
    # Seconds a database call may wait for a connection before the request gets 503.
    db_connect_timeout_s: float = Field(default=3.0, gt=0)
    db_pool_size: int = Field(default=10, ge=1)
    # Length of the per-user recent-history list kept in the cache.
    history_len: int = Field(default=200, ge=1)
    # Best unseen items ranked and cached with each user vector: a request whose k (after its
    # exclusions) fits is answered from this list without scoring the catalog.
    ranked_items: int = Field(default=100, ge=1, le=1000)
    user_vector_ttl_s: int = Field(default=3600, ge=1)
    cache_timeout_s: float = Field(default=0.25, gt=0)
    local_cache_size: int = Field(default=100_000, ge=1)
    # The experiment that routes /recommend calls naming no model (when it exists and runs).
    experiment: str = "default"
    # Model that serves when no experiment applies; unset: sasrec, mf, ease, popularity in turn.
    default_model: str | None = None
    # Events without a recommendation_id count for an exposure of the same user and item
    # shown at most this long before them.
    attribution_window_s: int = Field(default=1800, ge=0)
    conversion_types: tuple[str, ...] = ("purchase",)
    # The pretrained text encoder of the catalog's content vectors: a local directory or the
    # installed package's name; unset: the packaged all-MiniLM-L6-v2. encode_catalog=false
    # turns content vectors off (no encoder is loaded; content models cannot take new items).
    text_encoder: str | None = None
    encode_catalog: bool = True
    # How often each replica re-reads models on disk, experiments, popular and inactive items.
    refresh_interval_s: float = Field(default=10.0, gt=0)
    # Train small demo checkpoints at startup when the model directory is empty (make run).
    demo_models: bool = False
    # Retraining: models trained by `recsys retrain`, a weight per event type (0 leaves a type
    # out), users need this many distinct items to count, and the promotion gate's tolerance
    # (absolute validation NDCG@10 a new version may lose against the active one).
    retrain_models: tuple[str, ...] = ("mf", "sasrec")
    event_weights: dict[str, float] = Field(
        default_factory=lambda: {kind: 1.0 for kind in EVENT_TYPES if kind not in NEGATIVE_TYPES}
    )
    retrain_min_events: int = Field(default=3, ge=2)
    promotion_tolerance: float = Field(default=0.001, ge=0)
    retrain_seed: int = 0
    # torch intra-op threads in a serving process: scoring ops are small, and one thread per
    # worker beats threads contending with each other and the event loop. 0 leaves torch's default.
    torch_threads: int = Field(default=1, ge=0)
    log_level: str = "INFO"
    log_json: bool = True


@lru_cache
def get_settings() -> Settings:
    """Settings read once from the environment."""
    return Settings()
