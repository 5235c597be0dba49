"""SQLAlchemy 2 typed tables."""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    func,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from app.domain import EVENT_TYPES, ID_LEN

# SQLite only autoincrements an INTEGER PRIMARY KEY.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    """Declarative base for every table."""

    type_annotation_map: ClassVar[dict[Any, Any]] = {
        dict[str, Any]: JSON,
        datetime: DateTime(timezone=True),
    }


class Event(Base):
    """One interaction a shop sent; `id` orders the stream, `event_id` makes retries idempotent."""

    __tablename__ = "events"
    __table_args__ = (
        Index("ix_events_user_time", "user_id", "event_time"),
        Index("ix_events_recommendation", "recommendation_id"),
        Index("ix_events_time", "event_time"),  # retrain's window, retention's prune
        CheckConstraint(
            "type IN (" + ", ".join(f"'{kind}'" for kind in EVENT_TYPES) + ")",
            name="ck_events_type",
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(String(ID_LEN), unique=True)
    user_id: Mapped[str] = mapped_column(String(ID_LEN))
    item_id: Mapped[str] = mapped_column(String(ID_LEN))
    type: Mapped[str] = mapped_column(String(16))
    value: Mapped[float | None] = mapped_column(Float)
    event_time: Mapped[datetime]
    received_at: Mapped[datetime] = mapped_column(server_default=func.now())
    recommendation_id: Mapped[str | None] = mapped_column(String(64))


class Item(Base):
    """A catalog entry; inactive items are never recommended."""

    __tablename__ = "items"

    item_id: Mapped[str] = mapped_column(String(ID_LEN), primary_key=True)
    title: Mapped[str | None] = mapped_column(Text)
    description: Mapped[str | None] = mapped_column(Text)
    categories: Mapped[list[str]] = mapped_column(JSON, default=list, server_default=text("'[]'"))
    attributes: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    price: Mapped[float | None] = mapped_column(Float)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now())


class ModelVersion(Base):
    """A trained checkpoint: candidate, active or retired."""

    __tablename__ = "model_versions"
    __table_args__ = (Index("ix_model_versions_name_status", "model_name", "status"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    model_name: Mapped[str] = mapped_column(String(64))
    version: Mapped[str] = mapped_column(String(64), unique=True)
    path: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="candidate")
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    data_fingerprint: Mapped[str | None] = mapped_column(String(64))
    event_count: Mapped[int | None] = mapped_column(BigInteger)
    window_start: Mapped[datetime | None]
    window_end: Mapped[datetime | None]
    reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    promoted_at: Mapped[datetime | None]


class Exposure(Base):
    """One served recommendation list, for attribution of later clicks and conversions."""

    __tablename__ = "exposures"
    __table_args__ = (
        Index("ix_exposures_experiment", "experiment", "variant"),
        Index("ix_exposures_user", "user_id"),  # erasure deletes by user
        Index("ix_exposures_created", "created_at"),  # retention prunes by age
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    recommendation_id: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[str] = mapped_column(String(ID_LEN))
    model_name: Mapped[str] = mapped_column(String(64))
    model_version: Mapped[str | None] = mapped_column(String(64))
    experiment: Mapped[str | None] = mapped_column(String(64))
    variant: Mapped[str | None] = mapped_column(String(64))
    items: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    latency_ms: Mapped[float | None] = mapped_column(Float)  # time to build the list
    fallback: Mapped[str | None] = mapped_column(String(32))  # why popularity answered, if so


class Experiment(Base):
    """An A/B experiment: weighted arms (model names), a salt for sticky hashing, a status."""

    __tablename__ = "experiments"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    arms: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    salt: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default="running")
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now())
    # The report's CUPED covariate is each user's activity before this moment.
    started_at: Mapped[datetime | None]
    # {"metric": "latency_p99_ms" | "fallback_rate", "tolerance": relative}; null: the default.
    guardrail: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class ItemEmbedding(Base):
    """A pretrained text encoder's vector of one item text, keyed by the text's hash: an item
    whose content did not change is never encoded again, and items with equal text share it."""

    __tablename__ = "item_embeddings"

    encoder: Mapped[str] = mapped_column(String(128), primary_key=True)
    content_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    vector: Mapped[bytes] = mapped_column(LargeBinary)  # float32 little-endian


class Rule(Base):
    """A merchandising rule (attribute boosts, pinned items), stored like an experiment."""

    __tablename__ = "rules"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    body: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now())


class Erasure(Base):
    """The receipt of one DELETE /users/{id}: when and how much, keyed by a hash of the id so
    the receipt holds no personal data."""

    __tablename__ = "erasures"
    __table_args__ = (Index("ix_erasures_subject", "subject"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    subject: Mapped[str] = mapped_column(String(64))  # sha256 hex of the user id
    erased_at: Mapped[datetime] = mapped_column(server_default=func.now())
    counts: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
