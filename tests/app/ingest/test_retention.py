"""Retention (`recsys data prune`) and retrain's window: old events and exposures go."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from app.cli import cli
from app.config import Settings, get_settings
from app.db import repo
from app.db.repo import EventColumns
from app.db.session import make_engine, make_sessionmaker
from app.db.tables import Event, Exposure
from app.domain import DEFAULT_EVENT_WEIGHTS
from app.ingest.retention import prune
from app.training.retrain import read_events, window_start

NOW = datetime(2026, 6, 1, tzinfo=UTC)
AGES = [400, 200, 40, 5]  # days before NOW, one event and one exposure each


async def _seed(settings: Settings) -> None:
    """One event and one exposure per age in AGES."""
    engine = make_engine(settings.database_url)
    stamps = [NOW - timedelta(days=d) for d in AGES]
    events = EventColumns(
        [f"e{d}" for d in AGES], ["u1"] * 4, [f"i{d}" for d in AGES], ["view"] * 4,
        [None] * 4, stamps, [None] * 4,
    )  # fmt: skip
    exposures = [
        {"recommendation_id": f"r{d}", "user_id": "u1", "model_name": "mf", "model_version": "v1",
         "experiment": None, "variant": None, "items": ["i1"], "created_at": stamp}
        for d, stamp in zip(AGES, stamps, strict=True)
    ]  # fmt: skip
    try:
        async with make_sessionmaker(engine)() as session, session.begin():
            await repo.insert_events(session=session, events=events)
            await repo.insert_exposures(session=session, rows=exposures)
    finally:
        await engine.dispose()


async def _counts(settings: Settings) -> tuple[int, int]:
    """(events, exposures) stored."""
    engine = make_engine(settings.database_url)
    try:
        async with make_sessionmaker(engine)() as session:
            events = await session.scalar(select(func.count()).select_from(Event))
            exposures = await session.scalar(select(func.count()).select_from(Exposure))
            return int(events or 0), int(exposures or 0)
    finally:
        await engine.dispose()


async def test_prune_deletes_only_what_is_past_retention(settings: Settings) -> None:
    await _seed(settings)
    engine = make_engine(settings.database_url)
    try:
        report = await prune(
            make_sessionmaker(engine), event_days=300, exposure_days=30, batch=1, now=NOW
        )
    finally:
        await engine.dispose()
    assert (report.events, report.exposures) == (1, 3)  # batch=1: the loop drains
    assert await _counts(settings) == (3, 1)


async def test_no_retention_deletes_nothing(settings: Settings) -> None:
    await _seed(settings)
    engine = make_engine(settings.database_url)
    try:
        report = await prune(make_sessionmaker(engine), event_days=None, exposure_days=None)
    finally:
        await engine.dispose()
    assert report.to_json()["events_before"] is None and await _counts(settings) == (4, 4)


async def test_retrain_reads_only_its_window(settings: Settings) -> None:
    await _seed(settings)
    windowed = settings.model_copy(update={"retrain_window_days": 100.0})
    assert window_start(settings) is None
    engine = make_engine(settings.database_url)
    try:
        sessions = make_sessionmaker(engine)
        weights = dict(DEFAULT_EVENT_WEIGHTS)
        everything = await read_events(sessions, weights)
        recent = await read_events(sessions, weights, since=window_start(windowed, NOW))
    finally:
        await engine.dispose()
    assert len(everything) == 4
    assert sorted(recent.item_ids) == ["i40", "i5"]


def test_cli_prune_says_when_nothing_is_configured(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RECSYS_DATABASE_URL", sqlite_url)
    get_settings.cache_clear()
    try:
        result = CliRunner(env={"COLUMNS": "240"}).invoke(cli, ["data", "prune"])
        assert result.exit_code == 0 and "nothing deleted" in result.output
        result = CliRunner().invoke(cli, ["data", "prune", "--events-days", "30"])
        assert result.exit_code == 0 and "'events': 0" in result.output
    finally:
        get_settings.cache_clear()
