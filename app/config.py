"""Settings: the one place the environment is read (prefix RECSYS_, a .env file works too)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal, cast

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from app.domain import DEFAULT_EVENT_WEIGHTS, EventType
from models.data import default_data_dir

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def _existing_data_dir() -> Path | None:
    """The library's default dataset root (../shared/datasets) when it exists, else none."""
    candidate = default_data_dir()
    return candidate if candidate.is_dir() else None


def _existing_compare_dir() -> Path | None:
    """The repo's published offline comparison, when it is there."""
    candidate = PROJECT_ROOT / "bench" / "results" / "compare_ml1m"
    return candidate if (candidate / "compare.json").is_file() else None


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
    # Set: reads (/recommend, /compare, /models, GET /items/..., similar items) need this key
    # (or the write or admin key), for shops that do not want lists open to anyone; unset: open.
    read_key: str | None = None
    # Set: /metrics needs this key (or the admin key); unset: open, as scrapers usually expect.
    metrics_key: str | None = None
    # Browser origins allowed to call the API (CORS), e.g. ["https://shop.example"]; empty: no
    # CORS headers at all, so browsers on other origins are refused as before.
    cors_origins: tuple[str, ...] = ()
    model_dir: Path = Path("./var/models")
    data_dir: Path | None = Field(default_factory=_existing_data_dir)
    # The offline comparison (`recsys compare --out DIR`) the dashboard's Models page shows,
    # table and plots; unset: the repo's bench/results/compare_ml1m when present.
    compare_dir: Path | None = Field(default_factory=_existing_compare_dir)

    max_events_per_batch: int = Field(default=10_000, ge=1)
    max_items_per_batch: int = Field(default=10_000, ge=1)
    # Request bodies over this many bytes get 413 before they are parsed.
    max_body_bytes: int = Field(default=8 * 1024 * 1024, ge=1024)
    # Seconds a database call may wait for a connection before the request gets 503.
    db_connect_timeout_s: float = Field(default=3.0, gt=0)
    db_pool_size: int = Field(default=10, ge=1)
    # Length of the per-user recent-history list kept in the cache: more than SASRec's max_len
    # (200), because a time_gaps encoder reads the time since the item before its window.
    history_len: int = Field(default=256, ge=1)
    # Event types that mask an item for that user for good, however long ago (not only within
    # history_len): a shop that wants viewed items back lists only ["purchase"], say.
    seen_types: tuple[EventType, ...] = Field(
        default_factory=lambda: cast(
            tuple[EventType, ...],
            tuple(DEFAULT_EVENT_WEIGHTS),  # every positive type
        )
    )
    # Shops selling consumables: seen items may be recommended again (dislikes stay hidden);
    # a request's repeats=true does the same for one call.
    allow_repeats: bool = False
    # A rating at or above this is positive, at or below rating_negative_max negative (acts as
    # a dislike), between them neutral (model input and seen, lifts no dislike); one rule for
    # serving and training: app.ingest.meaning.polarity.
    rating_positive_min: float = 4.0
    rating_negative_max: float = 2.0
    # Best unseen items ranked and cached with each user vector: a request whose k (after its
    # exclusions) fits is answered from this list without scoring the catalog.
    ranked_items: int = Field(default=100, ge=1, le=1000)
    # Approximate retrieval (app.serving.retrieval): a dot-scored version with at least this
    # many items gets a faiss IVF index at load, its candidates re-scored exactly, masking exact;
    # 0: never (every list scored exactly). nprobe: cells scanned per query (of ~4 sqrt(items),
    # at most 4096; bench/scale.py: recall@10 on the trained MF table of 586k items 0.949 at
    # 512, 0.967 at 1024); overfetch: candidates beyond k + the masked items.
    ann_min_items: int = Field(default=50_000, ge=0)
    ann_nprobe: int = Field(default=1024, ge=1)
    ann_overfetch: int = Field(default=50, ge=0)
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
    # The experiment report: CUPED's covariate is each user's events in this many days before
    # the experiment's start; the always-valid intervals are tightest near this many users; the
    # guardrail of experiments that name none, and how much worse than the control (relative)
    # an arm may be on it before it is flagged.
    experiment_pre_window_days: float = Field(default=14, gt=0)
    experiment_sequential_tuning: int = Field(default=5000, ge=10)
    experiment_guardrail: Literal["latency_p99_ms", "fallback_rate"] = "latency_p99_ms"
    experiment_guardrail_tolerance: float = Field(default=0.2, ge=0)
    # The pretrained text encoder of the catalog's content vectors: a local directory or the
    # installed package's name; unset: the packaged all-MiniLM-L6-v2. encode_catalog=false
    # turns content vectors off (no encoder is loaded; content models cannot take new items).
    text_encoder: str | None = None
    encode_catalog: bool = True
    # How often each replica re-reads models on disk, experiments, popular and inactive items.
    refresh_interval_s: float = Field(default=10.0, gt=0)
    # Before a new version of a serving model takes traffic, its cached states are computed
    # for up to warm_users of the most active users (most events within warm_window_days of
    # the newest event), for at most warm_seconds, then it swaps in anyway
    # (app/serving/warmup.py): a promotion is no cold-cache storm. warm_users=0: no warm-up.
    warm_users: int = Field(default=2000, ge=0)
    warm_seconds: float = Field(default=30.0, ge=0)
    warm_window_days: float = Field(default=7.0, gt=0)
    # Filter masks (and boost biases) cached per filter, model version and catalog generation:
    # each is up to a byte (8 for biases) per item, so the cache is bounded, not per filter.
    filter_cache_size: int = Field(default=512, ge=1)
    # Train small demo checkpoints at startup when the model directory is empty (make run).
    demo_models: bool = False
    # Retraining: models trained by `recsys retrain`, a weight per event type (0 leaves a type
    # out; mf scales an interaction's confidence by it, sasrec its target's loss term; dislike
    # and hide are never trained on, research/results/negatives.md), users need this many
    # distinct items to count, and the promotion gate's tolerance
    # (absolute validation NDCG@10 a new version may lose against the active one).
    retrain_models: tuple[str, ...] = ("mf", "sasrec")
    event_weights: dict[str, float] = Field(default_factory=lambda: dict(DEFAULT_EVENT_WEIGHTS))
    retrain_min_events: int = Field(default=3, ge=2)
    # Fewer users than this (with retrain_min_events items each) is too little data: a model
    # fit to a handful of users only memorises them, so popular items keep answering until then.
    retrain_min_users: int = Field(default=10, ge=1)
    # `recsys retrain --every`: a run that cannot reach the database is retried after this
    # many seconds, doubling per failure up to the cap, instead of exiting (a crash loop).
    retrain_retry_s: float = Field(default=5.0, gt=0)
    retrain_retry_max_s: float = Field(default=300.0, gt=0)
    # Retrain reads only the events of the last N days (None: all): tastes drift, and a large
    # shop's training time and memory grow with what it reads.
    retrain_window_days: float | None = Field(default=None, gt=0)
    # Validation and the promotion gate score a seeded sample of this many users (the same
    # users on both sides of the gate): full ranking for millions of users costs more than
    # training. Below it every user is scored.
    retrain_eval_users: int = Field(default=20_000, ge=100)
    # `recsys data prune` deletes events / exposures older than this many days (None: keeps
    # them). Pruned events also leave the "seen" masks once a user's cached marks are rebuilt.
    event_retention_days: float | None = Field(default=None, gt=0)
    exposure_retention_days: float | None = Field(default=None, gt=0)
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
