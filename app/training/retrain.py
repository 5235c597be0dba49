"""Retraining: stored events -> a held-out slice -> trained candidates -> the promotion gate.

The protocol is models.train's: a model is fit with each user's latest item held out, scored
on it, then refit on everything for serving with the best epoch count. The gate compares
held-out models only, so neither side has seen the slice it is scored on.

Crash safety: a checkpoint directory appears only complete (models.checkpoint writes it to a
temporary directory and renames it), and its `model_versions` row is written after that, in
the same transaction that promotes it. A run killed at any moment therefore leaves either no
row (an orphan directory that nothing serves: retrain checkpoints are only served through their
row) or a complete, registered version.
"""

from __future__ import annotations

import hashlib
import logging
import time
import uuid
from array import array
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.config import Settings
from app.db import repo
from app.db.tables import ModelVersion
from app.domain import RETRAIN_SOURCE, as_utc
from app.ingest.content import catalog_features
from app.ingest.meaning import DEFAULT_RULE, RatingRule, input_types, is_input
from app.privacy.erasure import LateEvents
from models.checkpoint import load_checkpoint
from models.content import TextEncoder
from models.data import LeaveOneOut
from models.metrics import evaluate
from models.split import holdout_split
from models.train import Trained, save_trained, train_model
from models.zoo import get_model_class

log = logging.getLogger(__name__)
# Each version directory also holds the model fit without each user's latest item: the gate
# scores it (not the served model, which saw that item) against the next run's candidate.
VALIDATION = "validation"


@dataclass
class EventData:
    """Events as integer columns: users and items indexed in order of first appearance."""

    user_ids: list[str] = field(default_factory=list)
    item_ids: list[str] = field(default_factory=list)
    users: array[int] = field(default_factory=lambda: array("q"))
    items: array[int] = field(default_factory=lambda: array("q"))
    times: array[int] = field(default_factory=lambda: array("q"))  # microseconds since epoch
    weights: array[float] = field(default_factory=lambda: array("d"))  # the type's weight
    first: datetime | None = None
    last: datetime | None = None

    def __len__(self) -> int:
        return len(self.users)

    def fingerprint(self) -> str:
        """sha256 of the ids and the event columns."""
        digest = hashlib.sha256("\x1f".join(self.user_ids).encode())
        digest.update("\x1f".join(self.item_ids).encode())
        for column in (self.users, self.items, self.times):
            digest.update(column.tobytes())
        weights = np.frombuffer(self.weights, dtype=np.float64)
        if bool((weights != 1.0).any()):  # all 1: the fingerprint from before weights
            digest.update(self.weights.tobytes())
        return digest.hexdigest()

    def split(self, min_events: int) -> LeaveOneOut:
        """Each user's latest item held out for validation (models.split.holdout_split), with
        the events' weights unless every weight is 1 (then training is unweighted, as before)."""
        weights = np.frombuffer(self.weights, dtype=np.float64) if len(self.weights) else None
        return holdout_split(
            self.user_ids,
            self.item_ids,
            np.frombuffer(self.users, dtype=np.int64),
            np.frombuffer(self.items, dtype=np.int64),
            np.frombuffer(self.times, dtype=np.int64),
            min_events=min_events,
            weights=None if weights is None or bool((weights == 1.0).all()) else weights,
        )


async def read_events(
    sessionmaker: async_sessionmaker[AsyncSession],
    weights: dict[str, float],
    rule: RatingRule = DEFAULT_RULE,
    since: datetime | None = None,
) -> EventData:
    """Stream the model-input events out of the database, each with its type's weight, memory
    bounded: ids are interned as they arrive, the columns are compact arrays.

    What is input is serving's rule (app.ingest.meaning.is_input): a positively weighted type,
    never dislike or hide, never a rating at or below the rule's negative_max (a neutral rating
    is input). Negative events are left out of training (research/results/negatives.md: on
    validation, iALS with dislikes as weighted zero targets was no better than without them);
    serving masks the disliked items instead. `since`: only events at or after it (the
    retrain window)."""
    data = EventData()
    user_index: dict[str, int] = {}
    item_index: dict[str, int] = {}
    types = input_types(weights)
    async with sessionmaker() as session:
        late = LateEvents(await repo.erasure_times(session=session))
        async for rows in repo.stream_events(session=session, types=types, since=since):
            kept = [
                row
                for row in rows
                if is_input(row[2], row[5], weights, rule)  # not a low rating: a dislike
                and not (late and late.covers(row[0], row[3]))  # erased, arrived late
            ]
            # A column at a time: 30M rows of per-row appends cost minutes.
            data.users.extend(_interned(user_index, data.user_ids, [row[0] for row in kept]))
            data.items.extend(_interned(item_index, data.item_ids, [row[1] for row in kept]))
            data.times.extend([int(as_utc(row[3]).timestamp() * 1_000_000) for row in kept])
            data.weights.extend([float(weights[row[2]]) for row in kept])
    if len(data.times):
        stamps = np.frombuffer(data.times, dtype=np.int64)
        data.first, data.last = (_moment(int(f(stamps))) for f in (np.min, np.max))
    return data


def _moment(micros: int) -> datetime:
    """A UTC time from microseconds since the epoch."""
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=micros)


def _interned(index: dict[str, int], ids: list[str], values: list[str]) -> list[int]:
    """The indices of `values`, new ones added in order of first appearance."""
    out = []
    for value in values:
        found = index.get(value)
        if found is None:
            found = index[value] = len(ids)
            ids.append(value)
        out.append(found)
    return out


class TooLittleData(ValueError):
    """Not enough stored events to train on yet: day one, not a failure; a later run may have."""


@dataclass
class Outcome:
    """What happened to one model in a retrain run."""

    model: str
    version: str
    status: str  # "active" or "candidate"
    reason: str
    val: dict[str, float]
    active_val: dict[str, float] | None
    train_seconds: float

    def to_json(self) -> dict[str, Any]:
        """Plain values for logs and the CLI."""
        return self.__dict__.copy()


async def score_active(
    session: AsyncSession, name: str, split: LeaveOneOut, eval_users: int | None = None
) -> tuple[str, dict[str, float]] | None:
    """The active version of `name` scored on this run's validation slice (`eval_users`: the
    seeded sample the candidate was scored on)."""
    active = (await repo.active_versions(session=session)).get(name)
    if active is None:
        return None
    # Its held-out sibling: the served model was refit on everything, this slice included.
    validation = Path(active.path) / VALIDATION
    checkpoint = load_checkpoint(validation if validation.is_dir() else Path(active.path))
    remapped = split.with_item_ids(checkpoint.item_ids)
    return active.version, evaluate(checkpoint.model, remapped.val_set(eval_users))


def gate(
    new: dict[str, float], active: dict[str, float] | None, tolerance: float
) -> tuple[bool, str]:
    """Promote unless validation NDCG@10 is worse than the active version's by > tolerance."""
    if active is None:
        return True, "no active version"
    delta = new["ndcg@10"] - active["ndcg@10"]
    verdict = delta >= -tolerance
    word = "promoted" if verdict else "kept as candidate"
    return verdict, f"{word}: val ndcg@10 {new['ndcg@10']:.4f} vs active {active['ndcg@10']:.4f}"


def save_version(
    trained: Trained, split: LeaveOneOut, data: EventData, directory: Path, **extra: Any
) -> Path:
    """The served model at `directory`, its held-out sibling inside it, as retrain marks them."""
    meta: dict[str, Any] = {
        **extra,
        "source": RETRAIN_SOURCE,
        "data": {
            "fingerprint": data.fingerprint(),
            "events": len(data),
            "users": split.num_users,
            "items": split.num_items,
        },
    }
    report = trained.report
    path = save_trained(trained.model, report, split, directory, trained_on="all events", **meta)
    save_trained(
        trained.fitted,
        report,
        split,
        path / VALIDATION,
        trained_on="all but each user's latest item",
        **meta,
    )
    return path


async def register(
    sessionmaker: async_sessionmaker[AsyncSession],
    version: ModelVersion,
    split: LeaveOneOut,
    val: dict[str, float],
    tolerance: float,
    eval_users: int | None = None,
) -> dict[str, float] | None:
    """Score the active version, then add `version` as active or candidate; the active's val."""
    async with sessionmaker() as session:
        active = await score_active(session, version.model_name, split, eval_users)
        active_val = active[1] if active else None
        promote, version.reason = gate(val, active_val, tolerance)
        version.metrics = {"val": val, "active_val": active_val}
        session.add(version)
        if promote:
            await repo.activate_version(session=session, version=version)
        else:
            await session.commit()
    return active_val


async def retrain_model(
    name: str,
    split: LeaveOneOut,
    data: EventData,
    settings: Settings,
    sessionmaker: async_sessionmaker[AsyncSession],
    overrides: dict[str, Any],
    features: np.ndarray | None = None,
) -> Outcome:
    """Train one model, save it, score the active version, register (and maybe promote) it;
    `features`: the items' content vectors, for the models that read them."""
    started = time.perf_counter()
    content = features if get_model_class(name).reads_content else None
    # The service gives a content model new items only from the encoder it was trained with.
    extra = {} if content is None else {"content_encoder": TextEncoder(settings.text_encoder).name}
    trained = train_model(
        name,
        split,
        overrides,
        seed=settings.retrain_seed,
        item_features=content,
        eval_users=settings.retrain_eval_users,
    )
    seconds = time.perf_counter() - started
    version = f"{name}-{datetime.now(UTC):%Y%m%d%H%M%S}-{uuid.uuid4().hex[:6]}"
    path = save_version(trained, split, data, settings.model_dir / name / version, **extra)
    row = ModelVersion(
        model_name=name,
        version=version,
        path=str(path.resolve()),
        status="candidate",
        data_fingerprint=data.fingerprint(),
        event_count=len(data),
        window_start=data.first,
        window_end=data.last,
    )
    val = trained.report.val
    active_val = await register(
        sessionmaker, row, split, val, settings.promotion_tolerance, settings.retrain_eval_users
    )
    return Outcome(name, version, row.status, row.reason or "", val, active_val, seconds)


async def retrain(
    settings: Settings,
    sessionmaker: async_sessionmaker[AsyncSession],
    models: list[str],
    overrides: dict[str, dict[str, Any]] | None = None,
) -> list[Outcome]:
    """One run: read the events, split, then train and gate each model in turn."""
    data = await read_events(
        sessionmaker, settings.event_weights, RatingRule.of(settings), window_start(settings)
    )
    split = data.split(settings.retrain_min_events)
    if split.num_users < settings.retrain_min_users:
        raise TooLittleData(
            f"too little data to retrain yet: {len(data)} events, {split.num_users} users with "
            f"{settings.retrain_min_events}+ distinct items (RECSYS_RETRAIN_MIN_EVENTS), "
            f"{settings.retrain_min_users} needed (RECSYS_RETRAIN_MIN_USERS); "
            "popular items answer until a model is trained"
        )
    log.info(
        "retrain data: %d events, %d users, %d items", len(data), split.num_users, split.num_items
    )
    features = await content_features(settings, sessionmaker, models, split)
    return [
        await retrain_model(
            name, split, data, settings, sessionmaker, (overrides or {}).get(name, {}), features
        )
        for name in models
    ]


async def content_features(
    settings: Settings,
    sessionmaker: async_sessionmaker[AsyncSession],
    models: list[str],
    split: LeaveOneOut,
) -> np.ndarray | None:
    """The stored catalog's content vectors of the split's items, when a model reads them."""
    if not any(get_model_class(name).reads_content for name in models):
        return None
    encoder = TextEncoder(settings.text_encoder)
    return await catalog_features(sessionmaker, encoder, split.item_ids.ids)


def window_start(settings: Settings, now: datetime | None = None) -> datetime | None:
    """The oldest event time retrain reads (RECSYS_RETRAIN_WINDOW_DAYS), None: all."""
    if settings.retrain_window_days is None:
        return None
    return (now or datetime.now(UTC)) - timedelta(days=settings.retrain_window_days)
