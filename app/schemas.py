"""Pydantic request/response models: the API contract."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, NotRequired

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    StringConstraints,
    TypeAdapter,
    field_validator,
)
from typing_extensions import TypedDict

from app.domain import ID_LEN, OVERRIDE, EventType, as_utc

Id = Annotated[str, StringConstraints(min_length=1, max_length=ID_LEN)]
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
    recommendation_id: NotRequired[Annotated[str, StringConstraints(max_length=64)] | None]


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

    user_id: str = Field(min_length=1, max_length=256)
    k: int = Field(default=10, ge=1, le=1000, description="how many items")
    model: str | None = Field(default=None, description="a loaded model; overrides experiments")
    experiment: str | None = Field(default=None, description="the experiment that picks the arm")
    exclude: list[str] = Field(
        default_factory=list, description="item ids not to recommend; repeat or comma-separate"
    )
    explain: bool = Field(default=False, description="say which history items led to each item")


class RecommendBody(StrictModel):
    """POST /recommend: the GET parameters as JSON, plus a history for anonymous sessions."""

    user_id: Id
    k: int = Field(default=10, ge=1, le=1000)
    model: str | None = None
    experiment: str | None = None
    exclude: list[Id] = Field(default_factory=list, max_length=10_000)
    history: list[Id] | None = Field(
        default=None,
        max_length=10_000,
        description="recent item ids, oldest first; replaces the stored history",
    )
    explain: bool = Field(default=False, description="say which history items led to each item")


class ArmIn(StrictModel):
    """One experiment arm."""

    name: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    model: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    weight: float = Field(gt=0)


class ExperimentIn(StrictModel):
    """Arms with weights, a salt for sticky assignment (default: the name), a status."""

    arms: list[ArmIn] = Field(min_length=1, max_length=20)
    salt: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = None
    status: Literal["running", "paused", "stopped"] = "running"

    @field_validator("arms")
    @classmethod
    def _unique_names(cls, arms: list[ArmIn]) -> list[ArmIn]:
        names = [arm.name for arm in arms]
        if len(set(names)) != len(names) or OVERRIDE in names:
            raise ValueError(f"arm names must be unique and not {OVERRIDE!r}")
        return arms


class ArmOut(BaseModel):
    """One stored arm."""

    name: str
    model: str = Field(description="the model the arm serves")
    weight: float = Field(description="relative share of the users")


class ExperimentOut(BaseModel):
    """A stored experiment."""

    name: str
    arms: list[ArmOut]
    salt: str = Field(description="hashed with the user id to pick the user's arm")
    status: str = Field(description="'running', 'paused' or 'stopped'")
    updated_at: str | None = Field(description="ISO 8601 time of the last change")

    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "name": "default",
                "arms": [
                    {"name": "control", "model": "mf", "weight": 50},
                    {"name": "sequence", "model": "sasrec", "weight": 50},
                ],
                "salt": "default",
                "status": "running",
                "updated_at": "2026-12-01T10:00:00+00:00",
            }
        }
    )


class Rate(BaseModel):
    """A count among an arm's exposures and its rate with a 95% Wilson interval."""

    count: int
    rate: float | None = Field(description="count / exposures; null without exposures")
    ci95: list[float] = Field(description="[low, high] 95% Wilson interval of the rate")


class ProportionTest(BaseModel):
    """Two-proportion z-test of an arm's rate against the control's."""

    difference: float | None = Field(description="arm rate - control rate")
    z: float | None
    p_value: float | None = Field(description="two-sided; null when undefined")


class ArmReport(BaseModel):
    """One arm's exposures and attributed clicks and conversions."""

    arm: str
    exposures: int = Field(description="lists served by this arm")
    clicks: Rate
    conversions: Rate
    vs_control: dict[str, ProportionTest] | None = Field(
        default=None, description="per metric ('clicks', 'conversions'); null for the control"
    )


class ExperimentReport(BaseModel):
    """Per arm: exposures, clicks, conversions, intervals, and tests against the first arm."""

    experiment: ExperimentOut
    attribution_window_s: float = Field(description="how long after an exposure an event counts")
    conversion_types: list[str] = Field(description="event types that count as conversions")
    control: str = Field(description="the arm the others are tested against")
    arms: list[ArmReport]

    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "experiment": ExperimentOut.model_config["json_schema_extra"]["example"],  # type: ignore[index]
                "attribution_window_s": 1800.0,
                "conversion_types": ["purchase"],
                "control": "control",
                "arms": [
                    {
                        "arm": "control",
                        "exposures": 1000,
                        "clicks": {"count": 52, "rate": 0.052, "ci95": [0.04, 0.068]},
                        "conversions": {"count": 9, "rate": 0.009, "ci95": [0.005, 0.017]},
                        "vs_control": None,
                    }
                ],
            }
        }
    )


class ModelList(BaseModel):
    """One model's list in a comparison."""

    model: str
    model_version: str
    latency_ms: float = Field(description="time to build this list, cache lookups included")
    fallback: str | None = Field(description="why popularity answered, if it did")
    offline_metrics: dict[str, Any] = Field(description="the checkpoint's val and test metrics")
    items: list[ScoredItem]


class Overlap(BaseModel):
    """How much two models' lists agree."""

    a: str
    b: str
    jaccard: float = Field(description="|A ∩ B| / |A ∪ B| of the two top-k lists")
    rbo: float = Field(description="rank-biased overlap (p = 0.9): agreement weighted to the top")


class Comparison(BaseModel):
    """Each model's list for one user, and pairwise overlap."""

    user_id: str
    k: int
    models: list[ModelList]
    overlap: list[Overlap]

    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "user_id": "1",
                "k": 2,
                "models": [
                    {
                        "model": "mf",
                        "model_version": "v1",
                        "latency_ms": 1.2,
                        "fallback": None,
                        "offline_metrics": {"val": {"ndcg@10": 0.1257}},
                        "items": [
                            {"item_id": "50", "score": 0.9},
                            {"item_id": "181", "score": 0.8},
                        ],
                    }
                ],
                "overlap": [{"a": "mf", "b": "sasrec", "jaccard": 0.33, "rbo": 0.41}],
            }
        }
    )


class OfflineRow(BaseModel):
    """The metrics a loaded checkpoint was saved with."""

    model: str
    model_version: str
    val: dict[str, float] | None = Field(description="validation metrics (hr@10, ndcg@10, ...)")
    test: dict[str, float] | None = Field(description="test metrics, when the data had a test")
    train_seconds: float | None
    parameters: int | None
    data: dict[str, Any] | None = Field(description="what it was trained on: sizes, fingerprint")


class OfflineComparison(BaseModel):
    """The offline metrics of every loaded checkpoint."""

    models: list[OfflineRow]

    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "models": [
                    {
                        "model": "mf",
                        "model_version": "v1",
                        "val": {"ndcg@10": 0.1257, "hr@10": 0.2271},
                        "test": {"ndcg@10": 0.1217, "hr@10": 0.2214},
                        "train_seconds": 3.4,
                        "parameters": 156768,
                        "data": {"users": 2999, "items": 3266},
                    }
                ]
            }
        }
    )


class ModelInfo(BaseModel):
    """A loaded checkpoint version and its metadata."""

    name: str
    version: str
    path: str = Field(description="the checkpoint directory")
    items: int = Field(description="items the model scores")
    dim: int = Field(description="width of the user and item vectors")
    parameters: int | None
    created_at: str | None
    loaded_at: str
    train_seconds: float | None
    data: dict[str, Any] | None = Field(description="what it was trained on: sizes, fingerprint")
    metrics: dict[str, Any] = Field(description="validation (and test) metrics")
    config: dict[str, Any] | None = Field(description="the model's hyperparameters")


class ModelsOut(BaseModel):
    """Loaded versions, the default model, and refused checkpoints."""

    models: list[ModelInfo]
    default: str | None = Field(description="the model that answers when nothing else decides")
    errors: dict[str, str] = Field(description="model name -> why its checkpoint was refused")

    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "models": [
                    {
                        "name": "mf",
                        "version": "v1",
                        "path": "var/models/mf/v1",
                        "items": 3266,
                        "dim": 48,
                        "parameters": 156768,
                        "created_at": "2026-11-28T09:30:00+00:00",
                        "loaded_at": "2026-12-01T10:00:00+00:00",
                        "train_seconds": 3.4,
                        "data": {"users": 2999, "items": 3266},
                        "metrics": {"val": {"ndcg@10": 0.1257}},
                        "config": {"factors": 48},
                    }
                ],
                "default": "mf",
                "errors": {},
            }
        }
    )


class Erased(BaseModel):
    """What an erasure deleted."""

    events: int = Field(description="events deleted")
    exposures: int = Field(description="served lists deleted")


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
