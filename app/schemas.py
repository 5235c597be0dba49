"""Pydantic request/response models: the API contract."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

Id = Annotated[str, StringConstraints(min_length=1, max_length=256)]
EventType = Literal["view", "click", "add_to_cart", "purchase", "rating"]
# Events older than this are almost certainly unit mistakes (milliseconds read as seconds etc.).
EARLIEST_EVENT = datetime(1995, 1, 1, tzinfo=UTC)
# Clock skew tolerated for events stamped in the future.
MAX_FUTURE_SKEW_S = 24 * 3600


class StrictModel(BaseModel):
    """Unknown fields are errors (typos surface), numbers are accepted as string ids."""

    model_config = ConfigDict(extra="forbid", coerce_numbers_to_str=True, allow_inf_nan=False)


class EventIn(StrictModel):
    """One interaction; `event_id` makes retries idempotent (generated when absent)."""

    event_id: Id | None = None
    user_id: Id
    item_id: Id
    type: EventType
    value: float | None = Field(default=None, description="rating or amount; finite")
    timestamp: datetime | None = Field(default=None, description="ISO 8601 or epoch seconds")
    recommendation_id: Annotated[str, StringConstraints(max_length=64)] | None = None

    @field_validator("timestamp")
    @classmethod
    def sane_timestamp(cls, value: datetime | None) -> datetime | None:
        """Naive times are UTC; reject times before 1995 or too far in the future."""
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        if value < EARLIEST_EVENT:
            raise ValueError("timestamp is before 1995 (epoch seconds or milliseconds expected)")
        if (value - datetime.now(UTC)).total_seconds() > MAX_FUTURE_SKEW_S:
            raise ValueError("timestamp is in the future")
        return value


class EventBatch(StrictModel):
    """A batch of events stored in one transaction."""

    events: list[EventIn] = Field(min_length=1)


class EventsAccepted(BaseModel):
    """Counts for a committed batch."""

    accepted: int = Field(description="events newly stored")
    duplicates: int = Field(description="events whose event_id was already stored")


class ItemIn(StrictModel):
    """A catalog entry to insert or update."""

    item_id: Id
    title: Annotated[str, StringConstraints(max_length=1024)] | None = None
    attributes: dict[str, Any] = Field(default_factory=dict)
    active: bool = True


class ItemBatch(StrictModel):
    """A batch of catalog entries."""

    items: list[ItemIn] = Field(min_length=1)


class ItemsUpserted(BaseModel):
    """How many items were written."""

    upserted: int


class ItemOut(BaseModel):
    """A catalog entry as stored."""

    model_config = ConfigDict(from_attributes=True)

    item_id: str
    title: str | None
    attributes: dict[str, Any]
    active: bool
    updated_at: datetime


class Health(BaseModel):
    """Liveness."""

    status: Literal["ok"] = "ok"


class Readiness(BaseModel):
    """Each dependency's state; `status` is 'ok', 'degraded' or 'unavailable'."""

    status: str
    database: str
    cache: str
    models: dict[str, Any]
