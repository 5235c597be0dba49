"""Retraining: stored events -> a held-out slice -> trained candidates -> the promotion gate.

As offline (models.train): a model is fit with each user's latest item held out, scored on it,
then refit on everything for serving with the best epoch count. The gate compares held-out
models only, so neither side has seen the slice it is scored on.

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
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.config import Settings
from app.db import repo
from app.db.tables import ModelVersion
from app.domain import as_utc
from app.serving.registry import RETRAIN_SOURCE, load_version
from models.checkpoint import save_checkpoint
from models.data import IdMap, LeaveOneOut
from models.metrics import evaluate
from models.train import refit_model, train_model

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
        return digest.hexdigest()


async def read_events(
    sessionmaker: async_sessionmaker[AsyncSession], weights: dict[str, float]
) -> EventData:
    """Stream the events of every positively weighted type out of the database, memory bounded:
    ids are interned as they arrive, the columns are compact int64 arrays."""
    data = EventData()
    user_index: dict[str, int] = {}
    item_index: dict[str, int] = {}
    types = [kind for kind, weight in weights.items() if weight > 0]
    async with sessionmaker() as session:
        async for rows in repo.stream_events(session=session, types=types):
            for user_id, item_id, _, moment, _ in rows:
                data.users.append(_intern(user_index, data.user_ids, user_id))
                data.items.append(_intern(item_index, data.item_ids, item_id))
                moment = as_utc(moment)
                data.times.append(int(moment.timestamp() * 1_000_000))
                data.first = moment if data.first is None else min(data.first, moment)
                data.last = moment if data.last is None else max(data.last, moment)
    return data


def _intern(index: dict[str, int], ids: list[str], value: str) -> int:
    """The index of `value`, adding it when new."""
    found = index.get(value)
    if found is None:
        found = index[value] = len(ids)
        ids.append(value)
    return found


def holdout_split(data: EventData, min_events: int = 3) -> LeaveOneOut:
    """Each user's repeated items dropped (first kept), latest item held out for validation.

    Users with fewer than `min_events` distinct items are left out; items are re-indexed to
    those that remain. `test` repeats `val`: retraining only validates.
    """
    # Index by the ids' natural order, not their arrival order: concurrent ingestion stores the
    # same events in a different order each time, and the indices decide the initialisation.
    user_map, item_map = IdMap.sorted_from(data.user_ids), IdMap.sorted_from(data.item_ids)
    users = user_map.indices(data.user_ids)[np.frombuffer(data.users, dtype=np.int64)]
    items = item_map.indices(data.item_ids)[np.frombuffer(data.items, dtype=np.int64)]
    times = np.frombuffer(data.times, dtype=np.int64)
    order = np.lexsort((np.arange(len(users)), times, users))  # by user, time, arrival
    users, items, times = users[order], items[order], times[order]
    _, first = np.unique(users * len(item_map) + items, return_index=True)
    keep = np.sort(first)
    users, items, times = users[keep], items[keep], times[keep]
    counts = np.bincount(users, minlength=len(user_map))
    kept_user = counts[users] >= min_events
    users, items, times = users[kept_user], items[kept_user], times[kept_user]
    item_codes, items = np.unique(items, return_inverse=True)
    user_codes, starts = np.unique(users, return_index=True)
    histories = np.split(items.astype(np.int64), starts[1:])
    seconds = np.split(times // 1_000_000, starts[1:])  # stored in microseconds
    val = np.array([h[-1] for h in histories], dtype=np.int64)
    val_times = np.array([t[-1] for t in seconds], dtype=np.int64)
    return LeaveOneOut(
        user_ids=IdMap(user_map.ids[u] for u in user_codes),
        item_ids=IdMap(item_map.ids[i] for i in item_codes),
        train=[h[:-1] for h in histories],
        val=val,
        test=val.copy(),
        meta={"source": "events", "min_events": min_events},
        train_times=[t[:-1] for t in seconds],
        val_times=val_times,
        test_times=val_times.copy(),
    )


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
    session: AsyncSession, name: str, split: LeaveOneOut
) -> tuple[str, dict[str, float]] | None:
    """The active version of `name` scored on this run's validation slice."""
    active = (await repo.active_versions(session=session)).get(name)
    if active is None:
        return None
    # Its held-out sibling: the served model was refit on everything, this slice included.
    validation = Path(active.path) / VALIDATION
    loaded = load_version(validation if validation.is_dir() else Path(active.path))
    remapped = split.with_item_ids(IdMap(loaded.item_ids))
    return active.version, evaluate(loaded.model, remapped.val_set())


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


async def retrain_model(
    name: str,
    split: LeaveOneOut,
    data: EventData,
    settings: Settings,
    sessionmaker: async_sessionmaker[AsyncSession],
    overrides: dict[str, Any],
) -> Outcome:
    """Train one model, save it, score the active version, register (and maybe promote) it."""
    started = time.perf_counter()
    seed = settings.retrain_seed
    held_out, report = train_model(name, split, overrides, seed=seed, refit=False)
    serving, _ = refit_model(name, split, held_out, report.fit, seed)
    seconds = time.perf_counter() - started
    version = f"{name}-{datetime.now(UTC):%Y%m%d%H%M%S}-{uuid.uuid4().hex[:6]}"
    meta: dict[str, Any] = {
        "source": RETRAIN_SOURCE,
        "seed": seed,
        "metrics": {"val": report.val},
        "data": {
            "fingerprint": data.fingerprint(),
            "events": len(data),
            "users": split.num_users,
            "items": split.num_items,
        },
    }
    path = save_checkpoint(
        serving,
        settings.model_dir / name / version,
        item_ids=split.item_ids,
        trained_on="all events",
        train_seconds=seconds,
        **meta,
    )
    save_checkpoint(
        held_out,
        path / VALIDATION,
        item_ids=split.item_ids,
        trained_on="all but each user's latest item",
        **meta,
    )
    async with sessionmaker() as session:
        active = await score_active(session, name, split)
        promote, reason = gate(
            report.val, active[1] if active else None, settings.promotion_tolerance
        )
        row = ModelVersion(
            model_name=name,
            version=version,
            path=str(path.resolve()),
            status="candidate",
            metrics={"val": report.val, "active_val": active[1] if active else None},
            data_fingerprint=data.fingerprint(),
            event_count=len(data),
            window_start=data.first,
            window_end=data.last,
            reason=reason,
        )
        session.add(row)
        if promote:
            await repo.activate_version(session=session, version=row)
        else:
            await session.commit()
    return Outcome(
        name, version, row.status, reason, report.val, active[1] if active else None, seconds
    )


async def retrain(
    settings: Settings,
    sessionmaker: async_sessionmaker[AsyncSession],
    models: list[str],
    overrides: dict[str, dict[str, Any]] | None = None,
) -> list[Outcome]:
    """One run: read the events, split, then train and gate each model in turn."""
    data = await read_events(sessionmaker, settings.event_weights)
    split = holdout_split(data, settings.retrain_min_events)
    if split.num_users == 0:
        raise ValueError(f"no user has {settings.retrain_min_events} distinct items yet")
    log.info(
        "retrain data: %d events, %d users, %d items", len(data), split.num_users, split.num_items
    )
    return [
        await retrain_model(
            name, split, data, settings, sessionmaker, (overrides or {}).get(name, {})
        )
        for name in models
    ]
