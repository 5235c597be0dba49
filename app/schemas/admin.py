"""The HTTP contract of the admin and analysis routes: experiments, comparisons, models, users."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from app.domain import OVERRIDE, as_utc
from app.schemas.core import (
    AttributeName,
    AttributeValue,
    Category,
    ItemId,
    NoNul,
    ScoredItem,
    StrictModel,
)


class ArmIn(StrictModel):
    """One experiment arm."""

    name: Annotated[str, StringConstraints(min_length=1, max_length=64), NoNul]
    model: Annotated[str, StringConstraints(min_length=1, max_length=64), NoNul]
    weight: float = Field(gt=0)


GuardrailMetric = Literal["latency_p99_ms", "fallback_rate"]


class GuardrailIn(StrictModel):
    """The metric an arm must not worsen: p99 of the time to build a list, or the share of
    lists popularity answered; flagged when worse than the control's by more than `tolerance`
    (relative: 0.2 is 20%)."""

    metric: GuardrailMetric = "latency_p99_ms"
    tolerance: float = Field(default=0.2, ge=0, le=100)


class ExperimentIn(StrictModel):
    """Arms with weights, a salt for sticky assignment (default: the name), a status, when it
    started (default: kept, or now for a new experiment; the report's CUPED covariate is the
    users' activity before it) and a guardrail (default: the settings')."""

    arms: list[ArmIn] = Field(min_length=1, max_length=20)
    salt: Annotated[str, StringConstraints(min_length=1, max_length=64), NoNul] | None = None
    status: Literal["running", "paused", "stopped"] = "running"
    started_at: Annotated[datetime, AfterValidator(as_utc)] | None = None
    guardrail: GuardrailIn | None = None

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
    started_at: str | None = Field(
        default=None, description="ISO 8601 start; activity before it is the CUPED covariate"
    )
    guardrail: GuardrailIn | None = Field(default=None, description="null: the settings'")

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
                "started_at": "2026-11-20T00:00:00+00:00",
                "guardrail": {"metric": "latency_p99_ms", "tolerance": 0.2},
            }
        }
    )


class Rate(BaseModel):
    """A ratio metric of an arm: exposures with an attributed event of the kind, their share of
    the arm's exposures, and its interval (per-user delta method)."""

    count: int = Field(description="exposures with at least one attributed event of the kind")
    rate: float | None = Field(description="count / exposures; null without exposures")
    ci95: list[float] | None = Field(
        description="[low, high] 95% interval (always-valid unless sequential=false); null "
        "with under two users"
    )


class Revenue(BaseModel):
    """Attributed purchase value of an arm, per user."""

    total: float = Field(description="sum of the attributed purchases' value")
    mean: float | None = Field(description="total / users")
    ci95: list[float] | None = Field(description="[low, high] 95% interval of the mean")


class Lift(BaseModel):
    """One metric of an arm against the control's, per user (CUPED-adjusted unless cuped=false)."""

    lift: float = Field(description="relative: arm / control - 1 (0.05 is 5% better)")
    ci95: list[float] = Field(description="[low, high] 95% interval of the lift")
    p_value: float = Field(description="two-sided, of no difference")
    difference: float = Field(description="arm - control, in the metric's unit")
    variance_reduction: float = Field(
        description="share of the lift's variance CUPED removed; the interval narrows by "
        "1 - sqrt(1 - this)"
    )


class Guardrail(BaseModel):
    """An arm's guardrail value, flagged when worse than the control's beyond the tolerance."""

    metric: str
    value: float | None = Field(description="null when nothing was logged")
    worse: bool = Field(description="worse than the control by more than the tolerance")


class ArmReport(BaseModel):
    """One arm's users, exposures, per-user metrics and comparison with the control."""

    arm: str
    users: int = Field(description="users exposed in this arm (the randomisation unit)")
    exposures: int = Field(description="lists served by this arm")
    clicks: Rate
    conversions: Rate
    revenue: Revenue
    guardrail: Guardrail
    vs_control: dict[str, Lift | None] | None = Field(
        default=None,
        description="per metric ('clicks', 'conversions', 'revenue'; null where the control "
        "has none); null for the control and overrides",
    )


class SampleRatio(BaseModel):
    """Chi-square test of users per arm against the configured weights."""

    chi2: float
    p_value: float
    ok: bool = Field(description="false when p < 0.001: the split is broken, distrust the rest")


class Analysis(BaseModel):
    """How the report's numbers were computed."""

    unit: str = Field(description="the unit metrics are computed per and compared over")
    sequential: bool = Field(description="always-valid intervals (read at any time) or fixed")
    method: str
    alpha: float
    tuning_users: int = Field(description="users at which the always-valid interval is tightest")
    cuped: bool = Field(description="whether lifts are variance-reduced by the covariate")
    covariate: str


class ExperimentReport(BaseModel):
    """Per arm: users, exposures, per-user metrics with intervals, lifts against the first arm,
    the sample-ratio check, the guardrail and warnings."""

    experiment: ExperimentOut
    attribution_window_s: float = Field(description="how long after an exposure an event counts")
    conversion_types: list[str] = Field(description="event types that count as conversions")
    control: str = Field(description="the arm the others are tested against")
    analysis: Analysis
    srm: SampleRatio
    guardrail: GuardrailIn = Field(description="the guardrail in force")
    warnings: list[str] = Field(description="broken split, guardrail breaches")
    arms: list[ArmReport]

    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "experiment": ExperimentOut.model_config["json_schema_extra"]["example"],  # type: ignore[index]
                "attribution_window_s": 1800.0,
                "conversion_types": ["purchase"],
                "control": "control",
                "analysis": {
                    "unit": "user",
                    "sequential": True,
                    "method": "always-valid normal-mixture confidence sequence",
                    "alpha": 0.05,
                    "tuning_users": 5000,
                    "cuped": True,
                    "covariate": "events in the 14 days before started_at",
                },
                "srm": {"chi2": 0.4, "p_value": 0.53, "ok": True},
                "guardrail": {"metric": "latency_p99_ms", "tolerance": 0.2},
                "warnings": [],
                "arms": [
                    {
                        "arm": "control",
                        "users": 400,
                        "exposures": 1000,
                        "clicks": {"count": 52, "rate": 0.052, "ci95": [0.038, 0.066]},
                        "conversions": {"count": 9, "rate": 0.009, "ci95": [0.003, 0.015]},
                        "revenue": {"total": 310.5, "mean": 0.78, "ci95": [0.2, 1.35]},
                        "guardrail": {"metric": "latency_p99_ms", "value": 12.5, "worse": False},
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
    path: str | None = Field(description="the checkpoint directory; null without the admin key")
    items: int = Field(description="items the model scores")
    dim: int = Field(description="width of the user and item vectors")
    parameters: int | None
    created_at: str | None
    loaded_at: str
    train_seconds: float | None
    data: dict[str, Any] | None = Field(description="what it was trained on: sizes, fingerprint")
    metrics: dict[str, Any] = Field(description="validation (and test) metrics")
    config: dict[str, Any] | None = Field(description="the model's hyperparameters")
    index: dict[str, Any] | None = Field(
        default=None,
        description="the approximate-retrieval index (RECSYS_ANN_MIN_ITEMS): type, nlist, "
        "nprobe, build_seconds, exact_rows; null: every list is scored exactly",
    )


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


class BoostIn(StrictModel):
    """Raise (multiplier > 1) or lower (< 1) the items with an attribute value, or in a
    category, or both: the score gains log(multiplier), i.e. a softmax-style score's weight is
    multiplied by it (monotone for negative scores too); boosts of one item add up."""

    attribute: AttributeName | None = Field(default=None, description="attribute name")
    value: AttributeValue | None = Field(default=None, description="the attribute's value")
    category: Category | None = Field(
        default=None, description='a category path prefix: "shoes" covers "shoes/running"'
    )
    multiplier: float = Field(gt=0, le=1000, description="1.5: half as likely again; 0.5: half")

    @model_validator(mode="after")
    def _targets_something(self) -> BoostIn:
        if (self.attribute is None) != (self.value is None):
            raise ValueError("attribute and value come together")
        if self.attribute is None and self.category is None:
            raise ValueError("a boost needs an attribute and value, or a category")
        return self


class PinIn(StrictModel):
    """An item shown at a fixed position when it is active, matches the request's filter and
    the user has not seen it."""

    item_id: ItemId
    position: int = Field(ge=1, le=1000, description="1 is the top of the list")


class RuleIn(StrictModel):
    """A merchandising rule: attribute boosts and pinned items. Every active rule applies to
    every /recommend (and /compare) list, in rule-name order (an earlier rule's pin keeps its
    position; a later pin for a taken position takes the next free one)."""

    boosts: list[BoostIn] = Field(default_factory=list, max_length=100)
    pins: list[PinIn] = Field(default_factory=list, max_length=100)
    active: bool = Field(default=True, description="inactive rules are stored but not applied")
    description: Annotated[str, StringConstraints(max_length=1024), NoNul] | None = None

    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "boosts": [
                    {"attribute": "brand", "value": "acme", "multiplier": 1.5},
                    {"category": "shoes/running", "multiplier": 1.2},
                ],
                "pins": [{"item_id": "sku-1042", "position": 1}],
                "active": True,
                "description": "Acme week",
            }
        }
    )


class RuleOut(RuleIn):
    """A stored rule."""

    name: str
    updated_at: str | None = Field(description="ISO 8601 time of the last change")

    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "name": "acme-week",
                **RuleIn.model_config["json_schema_extra"]["example"],  # type: ignore[index,dict-item]
                "updated_at": "2026-12-01T10:00:00+00:00",
            }
        }
    )


class RuleList(BaseModel):
    """Every stored rule, by name."""

    rules: list[RuleOut]


class Erased(BaseModel):
    """What an erasure deleted."""

    events: int = Field(description="events deleted")
    exposures: int = Field(description="served lists deleted")
    checkpoints: int = Field(0, description="checkpoint meta.json files that named the user")
    cache: Literal["dropped", "pending"] = Field(
        "dropped", description="pending: the cache was unreachable; dropped once it answers"
    )

    model_config = ConfigDict(
        json_schema_extra={
            "example": {"events": 42, "exposures": 7, "checkpoints": 2, "cache": "dropped"}
        }
    )


class ErasureReceipt(BaseModel):
    """Proof that a user was erased: when, and how much; no personal data."""

    subject: str = Field(description="sha256 hex of the user id")
    erased_at: Annotated[datetime, AfterValidator(as_utc)]  # SQLite hands back naive UTC
    counts: dict[str, Any] = Field(description="what was deleted: events, exposures, checkpoints")

    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "subject": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
                "erased_at": "2026-12-01T10:00:00Z",
                "counts": {"events": 42, "exposures": 7, "checkpoints": 2},
            }
        }
    )
