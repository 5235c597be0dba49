"""The HTTP contract of the shop-facing routes: events, items, recommendations, probes."""

from __future__ import annotations

import itertools
import math
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal, NotRequired

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainValidator,
    StringConstraints,
    TypeAdapter,
    field_validator,
    model_validator,
)
from typing_extensions import TypedDict

from app.domain import ID_LEN, EventType, as_utc


def no_nul(text: str) -> str:
    """Refuse NUL characters: Postgres stores no text with one (JSON's \\u0000 decodes to it).
    Unpaired surrogates need no check here: a length-constrained str refuses them itself
    (string_unicode), and pydantic's JSON parser refuses their escapes."""
    if "\x00" in text:
        raise ValueError("NUL characters are not allowed")
    return text


# Every string a request carries that may reach the database or the cache is one of these:
# one substring test per field, 0.2 us an event (validating 10,000 events: 10.3 -> 12.2 ms),
# about 1% of POST /events' end-to-end 15 us an event (bench/ingest.py).
NoNul = AfterValidator(no_nul)
Id = Annotated[str, StringConstraints(min_length=1, max_length=ID_LEN), NoNul]
# A model or experiment named in a request (an unknown name is a 404, not a 422).
Name = Annotated[str, StringConstraints(max_length=64), NoNul]
# Events older than this are almost certainly unit mistakes (milliseconds read as seconds etc.).
EARLIEST_EVENT = datetime(1995, 1, 1, tzinfo=UTC)
# Clock skew tolerated for events stamped in the future.
MAX_FUTURE_SKEW_S = 24 * 3600


# Unknown fields are errors (typos surface), numbers are accepted as string ids.
STRICT = ConfigDict(extra="forbid", coerce_numbers_to_str=True, allow_inf_nan=False)


class StrictModel(BaseModel):
    """Request models share the strict config."""

    model_config = STRICT


class EventIn(TypedDict):
    """One interaction; `event_id` makes retries idempotent (generated when absent).

    A TypedDict, not a model: batches of 10,000 validate about 3x faster, and the time checks
    that need "now" run in the one pass that builds the insert columns (app.ingest.flow).
    """

    __pydantic_config__ = STRICT  # type: ignore[misc]

    event_id: NotRequired[Id | None]
    user_id: Id
    item_id: Id
    type: EventType
    value: NotRequired[float | None]  # rating or amount; finite
    timestamp: NotRequired[datetime | None]  # ISO 8601, epoch seconds or milliseconds
    recommendation_id: NotRequired[Annotated[str, StringConstraints(max_length=64), NoNul] | None]


class EventBatch(TypedDict):
    """A batch of events stored in one transaction."""

    __pydantic_config__ = STRICT  # type: ignore[misc]

    events: Annotated[list[EventIn], Field(min_length=1)]


EVENT_BATCH = TypeAdapter(EventBatch)


class EventsAccepted(BaseModel):
    """Counts for a committed batch."""

    accepted: int = Field(description="events newly stored")
    duplicates: int = Field(description="events whose event_id was already stored")


# Catalog limits: a bad feed fails with a clear 422, not a huge row or a database error.
TITLE_LEN = 1024
DESCRIPTION_LEN = 10_000
MAX_CATEGORIES = 64
CATEGORY_LEN = 256
MAX_ATTRIBUTES = 64
ATTRIBUTE_NAME_LEN = 64
ATTRIBUTE_VALUE_LEN = 1024


def stored_text(text: str) -> str:
    """Refuse what no database stores: NUL characters (Postgres) and unpaired surrogates
    (no UTF-8), which JSON's \\u0000 and \\ud800 escapes decode to."""
    if "\x00" in text:
        raise ValueError("NUL characters are not allowed")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("unpaired surrogates are not allowed (not UTF-8)") from None
    return text


def attribute_value(value: object) -> str | int | float | bool:
    """A flat attribute value: a string, a finite number or a boolean, as sent."""
    if isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("numbers must be finite")
        return value
    if isinstance(value, str):
        if len(value) > ATTRIBUTE_VALUE_LEN:
            raise ValueError(f"at most {ATTRIBUTE_VALUE_LEN} characters")
        return stored_text(value)
    raise ValueError("an attribute value is a string, a finite number or a boolean")


StoredText = AfterValidator(stored_text)
ItemId = Annotated[str, StringConstraints(min_length=1, max_length=ID_LEN), StoredText]
Title = Annotated[str, StringConstraints(max_length=TITLE_LEN), StoredText]
Description = Annotated[str, StringConstraints(max_length=DESCRIPTION_LEN), StoredText]
Category = Annotated[str, StringConstraints(min_length=1, max_length=CATEGORY_LEN), StoredText]
AttributeName = Annotated[
    str, StringConstraints(min_length=1, max_length=ATTRIBUTE_NAME_LEN), StoredText
]
AttributeValue = Annotated[
    str | int | float | bool,
    PlainValidator(attribute_value, json_schema_input_type=str | int | float | bool),
]


class ItemIn(StrictModel):
    """A catalog entry to insert or update; every field replaces the stored one."""

    item_id: ItemId
    title: Title | None = None
    description: Description | None = None
    categories: list[Category] = Field(
        default_factory=list,
        max_length=MAX_CATEGORIES,
        description='category paths, each one string: "shoes/running"',
    )
    attributes: dict[AttributeName, AttributeValue] = Field(
        default_factory=dict,
        max_length=MAX_ATTRIBUTES,
        description="flat: names to strings, finite numbers or booleans",
    )
    price: float | None = Field(default=None, ge=0)
    active: bool = Field(default=True, description="inactive items are never recommended")

    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "item_id": "sku-1042",
                "title": "Trail running shoe",
                "description": "Light, grippy shoe for muddy trails.",
                "categories": ["shoes/running", "outdoor"],
                "attributes": {"brand": "Acme", "waterproof": True, "weight_g": 280},
                "price": 89.9,
                "active": True,
            }
        }
    )


class ItemBatch(StrictModel):
    """A batch of catalog entries, stored in one transaction; the last entry wins per id."""

    items: list[ItemIn] = Field(min_length=1)


class ItemsUpserted(BaseModel):
    """How many items were written."""

    upserted: int


class ItemOut(BaseModel):
    """A catalog entry as stored."""

    model_config = ConfigDict(from_attributes=True)

    item_id: str
    title: str | None
    description: str | None
    categories: list[str]
    attributes: dict[str, Any]
    price: float | None
    active: bool
    updated_at: Annotated[datetime, AfterValidator(as_utc)]  # SQLite hands back naive UTC


class Health(BaseModel):
    """Liveness."""

    status: Literal["ok"] = "ok"


class LoadedModels(BaseModel):
    """The versions serving now, and the checkpoints refused with the reason."""

    loaded: dict[str, str] = Field(description="model name -> the version it serves")
    errors: dict[str, str] = Field(description="model name -> why its checkpoint was refused")
    warmup: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="model name -> its latest warm-up before a swap: version, state (warming, "
        "done, deadline, aborted), users, warmed, cached, skipped, failed, seconds",
    )

    model_config = ConfigDict(
        json_schema_extra={"example": {"loaded": {"mf": "mf-20261128093000-1a2b3c"}, "errors": {}}}
    )


class Readiness(BaseModel):
    """Each dependency's state; `status` is 'ok', 'degraded' or 'unavailable'."""

    status: str = Field(description="'ok', 'degraded' (cache down or no model) or 'unavailable'")
    database: str = Field(description="'ok' or 'unavailable'")
    cache: str = Field(description="'ok' or 'degraded'")
    models: LoadedModels = Field(description="the loaded versions and refused checkpoints")


class SimilarItem(BaseModel):
    """One item of a similar-items list."""

    item_id: str = Field(description="the shop's item id")
    score: float = Field(description="cosine similarity of the two items' vectors")


class ScoredItem(BaseModel):
    """One recommended item."""

    item_id: str = Field(description="the shop's item id")
    score: float = Field(description="the model's score; fallback items score below the model's")
    because: list[str] | None = Field(
        default=None,
        description="with explain: up to 3 history items that led to it ([] for fallback items)",
    )


class Recommendation(BaseModel):
    """A top-k list for one user from one model version."""

    user_id: str
    model: str = Field(description="the model that answered")
    model_version: str | None = Field(description="the checkpoint version that answered")
    variant: str | None = Field(description="experiment arm, 'override', or null")
    experiment: str | None = Field(default=None, description="the experiment that routed it")
    recommendation_id: str = Field(description="send it with clicks and purchases it led to")
    fallback: str | None = Field(default=None, description="why popularity answered, if it did")
    items: list[ScoredItem]

    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "user_id": "1",
                "model": "sasrec",
                "model_version": "sasrec-20261128093000-1a2b3c",
                "variant": None,
                "experiment": None,
                "recommendation_id": "9f86d081884c7d659a2feaa0c55ad015",
                "fallback": None,
                "items": [{"item_id": "50", "score": 7.31}, {"item_id": "172", "score": 6.9}],
            }
        }
    )


class RecommendQuery(BaseModel):
    """GET /recommend's query parameters. The route validates them itself, in one call:
    FastAPI's per-parameter validation was ~7% of a warm request's CPU."""

    user_id: Id
    k: int = Field(default=10, ge=1, le=1000, description="how many items")
    model: Name | None = Field(default=None, description="a loaded model; overrides experiments")
    experiment: Name | None = Field(default=None, description="the experiment that picks the arm")
    exclude: list[Id] = Field(
        default_factory=list, description="item ids not to recommend; repeat or comma-separate"
    )
    explain: bool = Field(default=False, description="say which history items led to each item")
    repeats: bool | None = Field(
        default=None,
        description="let items the user has seen come back (consumables); default: the "
        "setting RECSYS_ALLOW_REPEATS. Disliked and hidden items stay out",
    )


class PriceRange(StrictModel):
    """An inclusive price range; items without a price match no range."""

    min: float | None = Field(default=None, ge=0)
    max: float | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _ordered(self) -> PriceRange:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError("min is above max")
        return self


class FilterIn(StrictModel):
    """Which items a list may hold. Categories are path prefixes ("shoes" matches
    "shoes/running"), any of them; per attribute any of its values, every attribute named;
    categories and string values compare case-insensitively. Filters apply inside ranking: k
    items come back whenever k active unseen items match (the model's best, then popular)."""

    categories: list[Category] = Field(default_factory=list, max_length=MAX_CATEGORIES)
    attributes: dict[AttributeName, list[AttributeValue]] = Field(
        default_factory=dict,
        max_length=MAX_ATTRIBUTES,
        description="attribute name -> accepted values",
    )
    price: PriceRange | None = None

    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "categories": ["shoes"],
                "attributes": {"brand": ["acme", "zeta"]},
                "price": {"min": 0, "max": 100},
            }
        }
    )


class HistoryItem(StrictModel):
    """An anonymous history's item with the time it was seen (a model with time gaps reads it)."""

    item_id: Id
    timestamp: datetime | None = Field(
        default=None, description="ISO 8601, epoch seconds or milliseconds"
    )


def _entry(value: Any) -> Any:
    """A bare item id is an entry without a time: errors then name `item_id`, not a union arm."""
    return {"item_id": value} if isinstance(value, str) else value


# A history entry: an item id, or {"item_id", "timestamp"}.
HistoryEntry = Annotated[
    HistoryItem, BeforeValidator(_entry, json_schema_input_type=Id | HistoryItem)
]


class RecommendBody(StrictModel):
    """POST /recommend: the GET parameters as JSON, plus a history for anonymous sessions."""

    user_id: Id
    k: int = Field(default=10, ge=1, le=1000)
    model: Name | None = None
    experiment: Name | None = None
    exclude: list[Id] = Field(default_factory=list, max_length=10_000)
    history: list[HistoryEntry] | None = Field(
        default=None,
        max_length=10_000,
        description="recent items, oldest first; replaces the stored history. Each an item id, "
        'or {"item_id", "timestamp"}: every entry with a time or none (times not known). '
        "SASRec with time gaps reads the times",
    )
    explain: bool = Field(default=False, description="say which history items led to each item")
    repeats: bool | None = Field(
        default=None,
        description="let items the user has seen come back (consumables); default: the "
        "setting RECSYS_ALLOW_REPEATS. Disliked and hidden items stay out",
    )
    filter: FilterIn | None = Field(default=None, description="which items the list may hold")

    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "user_id": "anon-7f3a",
                "k": 10,
                "history": [
                    {"item_id": "1193", "timestamp": "2026-11-28T09:30:00Z"},
                    {"item_id": "661", "timestamp": "2026-11-28T09:32:10Z"},
                ],
            }
        }
    )

    @field_validator("history")
    @classmethod
    def _times_whole(cls, history: list[HistoryItem] | None) -> list[HistoryItem] | None:
        """Times for every entry or none, plausible, oldest first."""
        if history is None:
            return history
        stamps = [as_utc(e.timestamp) for e in history if e.timestamp is not None]
        if 0 < len(stamps) < len(history):
            raise ValueError("give every history entry a timestamp, or none")
        latest = datetime.now(UTC) + timedelta(seconds=MAX_FUTURE_SKEW_S)
        if stamps and not EARLIEST_EVENT <= min(stamps) <= max(stamps) <= latest:
            raise ValueError("history timestamps must lie after 1995 and not in the future")
        if any(b < a for a, b in itertools.pairwise(stamps)):
            raise ValueError("history timestamps must not decrease (oldest first)")
        return history


class SimilarItems(BaseModel):
    """The nearest items to one item, by a model's item vectors or by content."""

    item_id: str
    model: str = Field(description="the model whose item vectors answered, or 'content'")
    model_version: str | None = Field(description="its version; for 'content', the encoder")
    items: list[SimilarItem] = Field(description="highest similarity first")

    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "item_id": "50",
                "model": "sasrec",
                "model_version": "sasrec-20261128093000-1a2b3c",
                "items": [{"item_id": "172", "score": 0.83}, {"item_id": "181", "score": 0.79}],
            }
        }
    )
