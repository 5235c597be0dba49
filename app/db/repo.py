"""Plain data access: keyword-only queries, no orchestration."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import orjson
from sqlalchemy import delete, func, insert, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from app.db.tables import (
    Erasure,
    Event,
    Experiment,
    Exposure,
    Item,
    ItemEmbedding,
    ModelVersion,
    Rule,
)
from app.domain import NEGATIVE_TYPES, epoch_seconds

# One statement for the whole batch: arrays in, ON CONFLICT makes retries idempotent.
_PG_INSERT_EVENTS = """
INSERT INTO events (event_id, user_id, item_id, type, value, event_time, recommendation_id)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::float8[],
                     $6::timestamptz[], $7::text[])
ON CONFLICT (event_id) DO NOTHING
"""


@dataclass(slots=True)
class EventColumns:
    """A batch of events as columns: the shape both bulk insert paths want."""

    event_id: list[str]
    user_id: list[str]
    item_id: list[str]
    type: list[str]
    value: list[float | None]
    event_time: list[datetime]
    recommendation_id: list[str | None]

    def __len__(self) -> int:
        return len(self.event_id)

    def as_arrays(self) -> tuple[list[Any], ...]:
        """Columns in table order."""
        return (
            self.event_id,
            self.user_id,
            self.item_id,
            self.type,
            self.value,
            self.event_time,
            self.recommendation_id,
        )


EVENT_COLUMNS = (
    "event_id",
    "user_id",
    "item_id",
    "type",
    "value",
    "event_time",
    "recommendation_id",
)


def _dialect(session: AsyncSession) -> str:
    """The session's database dialect name."""
    return session.get_bind().dialect.name


async def insert_events(*, session: AsyncSession, events: EventColumns) -> int:
    """Insert events, skipping event_ids already stored; returns how many were new."""
    if not len(events):
        return 0
    if _dialect(session) == "postgresql":
        return await _insert_events_pg(session=session, events=events)
    rows = [
        dict(zip(EVENT_COLUMNS, row, strict=True)) for row in zip(*events.as_arrays(), strict=True)
    ]
    statement = (
        sqlite_insert(Event)
        .on_conflict_do_nothing(index_elements=["event_id"])
        .returning(Event.event_id)
    )
    return len((await session.scalars(statement, rows)).all())


async def _insert_events_pg(*, session: AsyncSession, events: EventColumns) -> int:
    """Postgres bulk path: COPY when every event_id is new, else one idempotent unnest INSERT.

    COPY is the fastest way in but fails on the first duplicate key; retried batches are the
    exception, so they pay for a rolled-back savepoint and take the ON CONFLICT path.
    """
    connection = await session.connection()
    raw = await connection.get_raw_connection()
    driver: Any = raw.driver_connection
    arrays = events.as_arrays()
    # asyncpg transactions: SQLAlchemy begins its own lazily, on its first statement only.
    async with driver.transaction():
        try:
            async with driver.transaction():  # a savepoint
                await driver.copy_records_to_table(
                    "events", records=zip(*arrays, strict=True), columns=EVENT_COLUMNS
                )
            return len(events)
        except asyncpg.UniqueViolationError:
            status: str = await driver.execute(_PG_INSERT_EVENTS, *arrays)
            return int(status.rsplit(" ", 1)[-1])  # "INSERT 0 <n>"


EXPOSURE_COLUMNS = (
    "recommendation_id",
    "user_id",
    "model_name",
    "model_version",
    "experiment",
    "variant",
    "items",
    "created_at",
    "latency_ms",
    "fallback",
)


async def insert_exposures(*, session: AsyncSession, rows: Sequence[dict[str, Any]]) -> int:
    """Store served lists; on Postgres one COPY (the ORM insert cost ~40 us per row in the
    serving process, a tenth of a warm request's CPU at full load)."""
    if not rows:
        return 0
    if _dialect(session) != "postgresql":
        await session.execute(insert(Exposure), list(rows))
        return len(rows)
    connection = await session.connection()
    driver: Any = (await connection.get_raw_connection()).driver_connection
    records = (
        tuple(
            orjson.dumps(row[c]).decode() if c == "items" else row.get(c) for c in EXPOSURE_COLUMNS
        )
        for row in rows
    )
    await driver.copy_records_to_table("exposures", records=records, columns=EXPOSURE_COLUMNS)
    return len(rows)


# The columns an item upsert writes; an update replaces all of them but the id.
ITEM_COLUMNS = (
    "item_id",
    "title",
    "description",
    "categories",
    "attributes",
    "price",
    "active",
    "updated_at",
)


async def upsert_items(*, session: AsyncSession, items: Sequence[dict[str, Any]]) -> int:
    """Insert or update catalog items by item_id (rows keyed by ITEM_COLUMNS, each id once);
    returns the number written."""
    if not items:
        return 0
    dialect = _dialect(session)
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    statement = insert(Item)
    statement = statement.on_conflict_do_update(
        index_elements=["item_id"],
        set_={column: statement.excluded[column] for column in ITEM_COLUMNS[1:]},
    )
    await session.execute(statement, list(items))
    return len(items)


async def get_item(*, session: AsyncSession, item_id: str) -> Item | None:
    """One catalog item, or None."""
    return await session.get(Item, item_id)


async def inactive_item_ids(*, session: AsyncSession) -> list[str]:
    """Ids of the catalog items marked inactive."""
    return list(
        (await session.execute(select(Item.item_id).where(Item.active.is_(False)))).scalars()
    )


async def popular_item_ids(
    *,
    session: AsyncSession,
    recent_events: int,
    limit: int,
    rating_negative_max: float = 2.0,
) -> list[str]:
    """The most interacted items over the latest `recent_events` events, most popular first;
    negative feedback (dislike, hide, a rating at or below `rating_negative_max`) is no
    interaction here."""
    positive = Event.type.not_in(NEGATIVE_TYPES) & (
        (Event.type != "rating") | Event.value.is_(None) | (Event.value > rating_negative_max)
    )
    recent = (
        select(Event.item_id)
        .where(positive)
        .order_by(Event.id.desc())
        .limit(recent_events)
        .subquery()
    )
    counts = (
        select(recent.c.item_id, func.count().label("n"))
        .group_by(recent.c.item_id)
        .order_by(func.count().desc(), recent.c.item_id)
        .limit(limit)
    )
    return [row[0] for row in await session.execute(counts)]


async def most_active_users(*, session: AsyncSession, window_days: float, limit: int) -> list[str]:
    """Users with the most events within `window_days` of the newest event, most active first
    (ties by id). The window ends at the newest event, not now, so replayed data has one too."""
    newest = (await session.execute(select(func.max(Event.event_time)))).scalar_one()
    if newest is None or limit <= 0:
        return []
    counts = (
        select(Event.user_id)
        .where(Event.event_time >= newest - timedelta(days=window_days))
        .group_by(Event.user_id)
        .order_by(func.count().desc(), Event.user_id)
        .limit(limit)
    )
    return list((await session.execute(counts)).scalars())


async def erase_user(*, session: AsyncSession, user_id: str) -> tuple[int, int]:
    """Delete a user's events and exposures (not committed); returns both counts."""
    events = await session.execute(delete(Event).where(Event.user_id == user_id))
    exposures = await session.execute(delete(Exposure).where(Exposure.user_id == user_id))
    return events.rowcount, exposures.rowcount  # type: ignore[attr-defined]


async def count_events(*, session: AsyncSession) -> int:
    """Number of stored events."""
    result = await session.execute(text("SELECT count(*) FROM events"))
    return int(result.scalar_one())


# The serving hot path's reads for a bare asyncpg connection (app/db/history.py); user_inputs()
# and user_marks() are the same in Core (no ORM state on a hot path). The model input
# (app.ingest.meaning.is_input in SQL): the weighted types, without ratings at or below
# rating_negative_max. $2: input types, $3: rating_negative_max. Each item with its event time
# in whole epoch seconds (floored, as retrain's split floors them for SASRec's time gaps).
PG_USER_INPUTS = """
SELECT item_id, floor(extract(epoch FROM event_time))::bigint FROM events
WHERE user_id = $1 AND type = ANY($2::varchar[])
  AND NOT (type = 'rating' AND value IS NOT NULL AND value <= $3)
ORDER BY event_time DESC, id DESC LIMIT $4
"""
# Every (item, type, value) a user sent, by its latest time: what app.ingest.meaning.fold_marks
# folds into the seen and hidden items. One row per distinct triple, not per event.
PG_USER_MARKS = """
SELECT item_id, type, value FROM events WHERE user_id = $1
GROUP BY item_id, type, value ORDER BY max(event_time), max(id)
"""


async def user_inputs(
    *,
    session: AsyncSession | AsyncConnection,
    user_id: str,
    limit: int,
    types: Sequence[str],
    negative_max: float,
) -> list[tuple[str, int]]:
    """PG_USER_INPUTS in Core: the user's latest `limit` model-input items with their event
    times (epoch seconds), oldest first."""
    query = (
        select(Event.item_id, Event.event_time)
        .where(
            Event.user_id == user_id,
            Event.type.in_(list(types)),
            ~((Event.type == "rating") & Event.value.is_not(None) & (Event.value <= negative_max)),
        )
        .order_by(Event.event_time.desc(), Event.id.desc())
        .limit(limit)
    )
    rows = (await session.execute(query)).all()
    return [(item, epoch_seconds(moment)) for item, moment in reversed(rows)]


async def user_marks(
    *, session: AsyncSession | AsyncConnection, user_id: str
) -> list[tuple[str, str, float | None]]:
    """PG_USER_MARKS in Core: (item, type, value) triples by their latest time."""
    query = (
        select(Event.item_id, Event.type, Event.value)
        .where(Event.user_id == user_id)
        .group_by(Event.item_id, Event.type, Event.value)
        .order_by(func.max(Event.event_time), func.max(Event.id))
    )
    return [(row[0], row[1], row[2]) for row in await session.execute(query)]


async def ping(*, session: AsyncSession) -> None:
    """Round trip that also proves the schema is migrated; raises otherwise."""
    await session.execute(text("SELECT version_num FROM alembic_version"))


async def stream_events(
    *,
    session: AsyncSession,
    types: Sequence[str],
    since: datetime | None = None,
    chunk: int = 50_000,
) -> AsyncIterator[Sequence[Any]]:
    """Every event of the given types (at or after `since`) in storage order, in chunks
    (server-side cursor): rows of (user_id, item_id, type, event_time, id, value)."""
    query = (
        select(Event.user_id, Event.item_id, Event.type, Event.event_time, Event.id, Event.value)
        .where(Event.type.in_(list(types)))
        .order_by(Event.id)
        .execution_options(yield_per=chunk)
    )
    if since is not None:
        query = query.where(Event.event_time >= since)
    result = await session.stream(query)
    async for rows in result.partitions(chunk):
        yield rows


async def add_model_version(*, session: AsyncSession, row: ModelVersion) -> ModelVersion:
    """Register a version (its files are already complete on disk)."""
    session.add(row)
    await session.commit()
    return row


async def model_versions(*, session: AsyncSession, name: str | None = None) -> list[ModelVersion]:
    """Registered versions, newest first."""
    query = select(ModelVersion).order_by(ModelVersion.id.desc())
    if name is not None:
        query = query.where(ModelVersion.model_name == name)
    return list((await session.execute(query)).scalars())


async def active_versions(*, session: AsyncSession) -> dict[str, ModelVersion]:
    """The active version of each model that has one."""
    query = select(ModelVersion).where(ModelVersion.status == "active")
    return {row.model_name: row for row in (await session.execute(query)).scalars()}


async def activate_version(*, session: AsyncSession, version: ModelVersion) -> None:
    """Make `version` the only active version of its model, in one transaction."""
    now = datetime.now(UTC)
    await session.execute(
        update(ModelVersion)
        .where(ModelVersion.model_name == version.model_name, ModelVersion.status == "active")
        .values(status="retired")
    )
    version.status, version.promoted_at, version.reason = "active", now, version.reason
    await session.commit()


async def get_experiment(*, session: AsyncSession, name: str) -> Experiment | None:
    """One stored experiment, or None."""
    return await session.get(Experiment, name)


async def all_experiments(*, session: AsyncSession) -> list[Experiment]:
    """Every stored experiment."""
    return list((await session.execute(select(Experiment))).scalars())


async def put_experiment(
    *,
    session: AsyncSession,
    name: str,
    arms: list[dict[str, Any]],
    salt: str,
    status: str,
    started_at: datetime | None = None,
    guardrail: dict[str, Any] | None = None,
) -> Experiment:
    """Create or replace an experiment and commit; `started_at` None keeps the stored start
    (now for a new experiment)."""
    row = await session.get(Experiment, name)
    if row is None:
        row = Experiment(name=name)
        session.add(row)
    row.arms, row.salt, row.status = {"arms": arms}, salt, status
    row.updated_at = datetime.now(UTC)
    row.started_at = started_at or row.started_at or row.updated_at
    row.guardrail = guardrail
    await session.commit()
    return row


async def get_rule(*, session: AsyncSession, name: str) -> Rule | None:
    """One stored merchandising rule, or None."""
    return await session.get(Rule, name)


async def all_rules(*, session: AsyncSession) -> list[Rule]:
    """Every stored merchandising rule, by name."""
    return list((await session.execute(select(Rule).order_by(Rule.name))).scalars())


async def put_rule(*, session: AsyncSession, name: str, body: dict[str, Any]) -> Rule:
    """Create or replace a rule and commit."""
    row = await session.get(Rule, name)
    if row is None:
        row = Rule(name=name)
        session.add(row)
    row.body, row.updated_at = body, datetime.now(UTC)
    await session.commit()
    return row


async def delete_rule(*, session: AsyncSession, name: str) -> bool:
    """Delete a rule and commit; whether it existed."""
    result = await session.execute(delete(Rule).where(Rule.name == name))
    await session.commit()
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def catalog_since(*, session: AsyncSession, since: datetime | None) -> list[Item]:
    """Catalog items written after `since` (every item when None), oldest change first."""
    query = select(Item).order_by(Item.updated_at)
    if since is not None:
        query = query.where(Item.updated_at > since)
    return list((await session.execute(query)).scalars())


async def item_embeddings(
    *, session: AsyncSession, encoder: str, hashes: Sequence[str]
) -> dict[str, bytes]:
    """Stored vectors of the given content hashes (IN lists of 1,000)."""
    found: dict[str, bytes] = {}
    for start in range(0, len(hashes), 1000):
        query = select(ItemEmbedding.content_hash, ItemEmbedding.vector).where(
            ItemEmbedding.encoder == encoder,
            ItemEmbedding.content_hash.in_(list(hashes[start : start + 1000])),
        )
        found.update({row[0]: row[1] for row in await session.execute(query)})
    return found


async def put_item_embeddings(
    *, session: AsyncSession, encoder: str, vectors: Mapping[str, bytes]
) -> None:
    """Store vectors by content hash and commit; a hash already stored is kept."""
    if not vectors:
        return
    insert = pg_insert if _dialect(session) == "postgresql" else sqlite_insert
    rows = [{"encoder": encoder, "content_hash": h, "vector": v} for h, v in vectors.items()]
    statement = insert(ItemEmbedding).on_conflict_do_nothing()
    await session.execute(statement, rows)
    await session.commit()


# Erasure receipts (issue 14).
async def add_erasure(*, session: AsyncSession, subject: str, counts: dict[str, Any]) -> Erasure:
    """Record an erasure receipt (not committed): the hashed subject and the counts."""
    row = Erasure(subject=subject, counts=counts, erased_at=datetime.now(UTC))
    session.add(row)
    await session.flush()
    return row


async def latest_erasure(*, session: AsyncSession, subject: str) -> Erasure | None:
    """The newest erasure receipt (an Erasure row) of a subject, or None."""
    query = select(Erasure).where(Erasure.subject == subject).order_by(Erasure.id.desc()).limit(1)
    return (await session.execute(query)).scalars().first()


async def erasures_after(*, session: AsyncSession, after_id: int) -> list[Erasure]:
    """Erasure rows with an id above `after_id`, oldest first (replicas poll these)."""
    query = select(Erasure).where(Erasure.id > after_id).order_by(Erasure.id)
    return list((await session.execute(query)).scalars())


async def erasure_times(*, session: AsyncSession) -> dict[str, datetime]:
    """Each erased subject's latest erasure time (retrain leaves out their late events)."""
    query = select(Erasure.subject, func.max(Erasure.erased_at)).group_by(Erasure.subject)
    return {row[0]: row[1] for row in await session.execute(query)}


async def delete_model_versions(*, session: AsyncSession, ids: Sequence[int]) -> int:
    """Delete model_versions rows by id (not committed); returns how many."""
    if not ids:
        return 0
    result = await session.execute(delete(ModelVersion).where(ModelVersion.id.in_(list(ids))))
    return int(result.rowcount)  # type: ignore[attr-defined]


async def delete_events_before(*, session: AsyncSession, before: datetime, batch: int) -> int:
    """Delete up to `batch` events older than `before` (oldest ids first); returns how many.
    Small batches keep each transaction and its locks short while the service writes."""
    oldest = select(Event.id).where(Event.event_time < before).order_by(Event.id).limit(batch)
    result = await session.execute(delete(Event).where(Event.id.in_(oldest.scalar_subquery())))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


async def delete_exposures_before(*, session: AsyncSession, before: datetime, batch: int) -> int:
    """Delete up to `batch` exposures logged before `before`; returns how many."""
    oldest = select(Exposure.id).where(Exposure.created_at < before).limit(batch)
    result = await session.execute(
        delete(Exposure).where(Exposure.id.in_(oldest.scalar_subquery()))
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
