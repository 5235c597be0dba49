"""Bulk event loading: a CSV file straight into the events table, chunk by chunk, resumable.

For initial loads and backfills (a synthetic shop of 30M events, a shop's export) that would
take hours through `POST /events`. Each chunk is one transaction through the same insert as the
API (`repo.insert_events`: COPY on Postgres, idempotent on `event_id`), then the touched users'
cached state is dropped, so the service sees the new events on their next request. After each
commit the number of rows done is written to a state file; a rerun skips them, and a chunk that
committed just before a crash is skipped by its event ids (idempotency), never stored twice.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import islice
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.cache import SafeCache
from app.db import repo
from app.db.repo import EventColumns
from app.domain import EVENT_TYPES
from app.schemas import EARLIEST_EVENT, MAX_FUTURE_SKEW_S

MAX_ID = 256
# Header names each column may go by (lower case), as models.data reads headed CSVs.
COLUMN_NAMES: dict[str, tuple[str, ...]] = {
    "event_id": ("event_id", "id"),
    "user_id": ("user_id", "user", "userid"),
    "item_id": ("item_id", "item", "itemid"),
    "type": ("type", "event_type"),
    "timestamp": ("timestamp", "time", "ts"),
    "value": ("value", "rating", "amount"),
}
REQUIRED = ("user_id", "item_id", "type")


class BadRow(ValueError):
    """A row of the file that cannot be stored; names the row (1-based) and the field."""


@dataclass
class LoadReport:
    """What one run did."""

    rows: int  # rows read in this run (skipped ones not counted)
    inserted: int  # new events stored
    duplicates: int  # rows whose event_id was already stored
    skipped: int  # rows a previous run had already committed (the state file)
    cache_errors: int = 0  # chunks whose users' cached state could not be dropped

    def to_json(self) -> dict[str, int]:
        """Plain dict for the CLI's output."""
        return self.__dict__.copy()


def file_key(path: Path) -> str:
    """A short fingerprint of the file (size + first MiB): whose progress the state file holds."""
    digest = hashlib.sha256(str(path.stat().st_size).encode())
    with open(path, "rb") as f:
        digest.update(f.read(1 << 20))
    return digest.hexdigest()[:12]


def column_map(header: list[str]) -> dict[str, int]:
    """Canonical column -> position in `header`; BadRow naming a missing required column."""
    lowered = [name.strip().lower() for name in header]
    found = {}
    for column, names in COLUMN_NAMES.items():
        for name in names:
            if name in lowered:
                found[column] = lowered.index(name)
                break
    missing = [c for c in REQUIRED if c not in found]
    if missing:
        raise BadRow(f"header: no {', '.join(missing)} column (header: {', '.join(header)})")
    return found


class RowParser:
    """Turns the file's rows into EventColumns, checking each field as POST /events does."""

    def __init__(self, columns: dict[str, int], now: datetime | None = None) -> None:
        self.columns = columns
        self.latest = (now or datetime.now(UTC)) + timedelta(seconds=MAX_FUTURE_SKEW_S)
        self.now = now or datetime.now(UTC)

    def chunk(self, rows: list[list[str]], first_row: int) -> EventColumns:
        """Columns of `rows`, whose first is data row `first_row` (1-based, blank lines not
        counted): the number errors name and generated event ids carry. Checked a column at a
        time (per-row calls cost more than the database's COPY); BadRow names the first bad row
        of the first bad column."""
        need = max(self.columns.values()) + 1
        short = next((n for n, row in enumerate(rows) if len(row) < need), None)
        if short is not None:
            raise BadRow(f"row {first_row + short}: expected at least {need} fields")
        users = _identifiers(self._column(rows, "user_id"), first_row, "user_id")
        items = _identifiers(self._column(rows, "item_id"), first_row, "item_id")
        types = self._column(rows, "type")
        bad = next((n for n, kind in enumerate(types) if kind not in EVENT_TYPES), None)
        if bad is not None:
            _event_type(types[bad], first_row + bad)  # raises, naming it
        return EventColumns(
            event_id=self._event_ids(rows, first_row),
            user_id=users,
            item_id=items,
            type=types,
            value=[_value(raw, first_row + n) for n, raw in enumerate(self._column(rows, "value"))],
            event_time=self._times(self._column(rows, "timestamp"), first_row),
            recommendation_id=[None] * len(rows),
        )

    def _column(self, rows: list[list[str]], column: str) -> list[str]:
        """A column's stripped texts ('' for each row when the file has no such column)."""
        index = self.columns.get(column)
        if index is None:
            return [""] * len(rows)
        return [row[index].strip() for row in rows]

    def _event_ids(self, rows: list[list[str]], first_row: int) -> list[str]:
        """The rows' own event ids, else a hash of the row number and fields: a rerun of the
        same file (or of one fixed after a bad row) makes the same ids, so nothing is stored
        twice, while other files' rows get other ids."""
        given = self._column(rows, "event_id")
        out = []
        for n, (raw, row) in enumerate(zip(given, rows, strict=True)):
            if raw:
                out.append(raw)
                continue
            text = "\x1f".join([str(first_row + n), *row]).encode("utf-8", "surrogatepass")
            out.append("bulk-" + hashlib.blake2b(text, digest_size=12).hexdigest())
        _identifiers(out, first_row, "event_id")
        return out

    def _times(self, raws: list[str], first_row: int) -> list[datetime]:
        """The rows' event times; whole epoch seconds (a synthetic shop's, most exports') in
        one pass, anything else row by row."""
        if all(raw.isdigit() for raw in raws):
            seconds = [int(raw) for raw in raws]
            low, high = EARLIEST_EVENT.timestamp(), self.latest.timestamp()
            bad = next((n for n, t in enumerate(seconds) if not low <= t <= high), None)
            if bad is None:
                return [datetime.fromtimestamp(t, UTC) for t in seconds]
        return [self._time(raw, first_row + n) for n, raw in enumerate(raws)]

    def _time(self, raw: str, number: int) -> datetime:
        """Epoch seconds or ISO-8601 (UTC when naive); empty: now. Bounded as the API bounds it."""
        if not raw:
            return self.now
        try:
            stamp = (
                datetime.fromtimestamp(float(raw), UTC)
                if raw.lstrip("-").replace(".", "", 1).isdigit()
                else datetime.fromisoformat(raw)
            )
        except (ValueError, OverflowError, OSError):
            raise BadRow(
                f"row {number}: timestamp {raw!r} is not epoch seconds or ISO-8601"
            ) from None
        stamp = stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)
        if not EARLIEST_EVENT <= stamp <= self.latest:
            raise BadRow(f"row {number}: timestamp {raw!r} is outside {EARLIEST_EVENT:%Y} .. now")
        return stamp


def _identifiers(values: list[str], first_row: int, field: str) -> list[str]:
    """The ids, each non-empty, at most MAX_ID characters and without NUL; BadRow names the
    first that is not."""
    bad = next((n for n, v in enumerate(values) if not v or len(v) > MAX_ID or "\x00" in v), None)
    if bad is not None:
        raise BadRow(f"row {first_row + bad}: {field} must be 1 to {MAX_ID} characters without NUL")
    return values


def _event_type(raw: str, number: int) -> str:
    """One of the service's event types."""
    if raw not in EVENT_TYPES:
        raise BadRow(f"row {number}: type {raw!r} is not one of {', '.join(EVENT_TYPES)}")
    return raw


def _value(raw: str, number: int) -> float | None:
    """A finite number, or None when empty."""
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        raise BadRow(f"row {number}: value {raw!r} is not a number") from None
    if not math.isfinite(value):
        raise BadRow(f"row {number}: value must be finite")
    return value


def read_state(path: Path, key: str) -> int:
    """Rows a previous run committed for the file with this key (0 for another file)."""
    try:
        state = json.loads(path.read_text())
    except (OSError, ValueError):
        return 0
    return int(state.get("rows", 0)) if state.get("file") == key else 0


def write_state(path: Path, key: str, rows: int) -> None:
    """Record `rows` committed, atomically (a crash leaves the old or the new state)."""
    partial = path.with_name(path.name + ".tmp")
    partial.write_text(json.dumps({"file": key, "rows": rows}))
    partial.replace(path)


def row_chunks(rows: Iterator[list[str]], size: int) -> Iterator[list[list[str]]]:
    """Lists of up to `size` rows."""
    while chunk := list(islice(rows, size)):
        yield chunk


async def load_events(
    *,
    path: Path,
    sessions: async_sessionmaker[AsyncSession],
    cache: SafeCache | None,
    chunk: int,
    state: Path,
    progress: Callable[[int], Any] | None = None,
) -> LoadReport:
    """Load `path` into the events table in chunks of `chunk` rows, resuming after `state`."""
    key = file_key(path)
    done = read_state(state, key)
    with open(path, encoding="utf-8-sig", newline="") as f:
        reader = csv.reader(f)
        parser = RowParser(column_map(next(reader, [])))
        rows_left = (row for row in reader if row)  # blank lines are not rows
        for _ in islice(rows_left, done):  # committed by an earlier run
            pass
        report = LoadReport(0, 0, 0, done)
        number = done + 1
        for rows in row_chunks(rows_left, chunk):
            columns = parser.chunk(rows, number)
            inserted = await _store(sessions, columns)
            if cache is not None and not await _drop_cached(cache, columns.user_id):
                report.cache_errors += 1
            report.rows, report.inserted = report.rows + len(rows), report.inserted + inserted
            report.duplicates += len(rows) - inserted
            number += len(rows)
            write_state(state, key, done + report.rows)
            if progress is not None:
                progress(len(rows))
    return report


async def _store(sessions: async_sessionmaker[AsyncSession], columns: EventColumns) -> int:
    """One chunk in one transaction; returns how many events were new."""
    async with sessions() as session, session.begin():
        return await repo.insert_events(session=session, events=columns)


async def _drop_cached(cache: SafeCache, user_ids: list[str]) -> bool:
    """Drop the users' cached history, marks and vectors; False when the cache failed (this
    process's fence dies with it: the operator then flushes the cache, as the CLI says)."""
    users = sorted(set(user_ids))
    return await cache.invalidate(users, cache.backend.drop_users, users, history=True)
