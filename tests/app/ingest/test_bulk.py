"""`recsys data load`: a CSV into the events table in chunks, resumable and idempotent."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from app.cache import make_cache
from app.cli import cli
from app.config import Settings, get_settings
from app.db.session import make_engine, make_sessionmaker
from app.db.tables import Event
from app.ingest.bulk import BadRow, load_events, read_state
from models.synth import SynthConfig, write_shop

runner = CliRunner(env={"COLUMNS": "240"})


async def _count(settings: Settings) -> int:
    """Events stored."""
    engine = make_engine(settings.database_url)
    try:
        async with make_sessionmaker(engine)() as session:
            return int(await session.scalar(select(func.count()).select_from(Event)) or 0)
    finally:
        await engine.dispose()


async def _load(settings: Settings, path: Path, chunk: int = 300) -> object:
    """One load run with the settings' database and cache."""
    engine, cache = make_engine(settings.database_url), make_cache(settings)
    try:
        return await load_events(
            path=path,
            sessions=make_sessionmaker(engine),
            cache=cache,
            chunk=chunk,
            state=path.with_name("state.json"),
        )
    finally:
        await cache.close()
        await engine.dispose()


async def test_loads_resumes_and_stays_idempotent(settings: Settings, tmp_path: Path) -> None:
    write_shop(SynthConfig(items=50, users=40, events=1000, seed=2), tmp_path)
    path = tmp_path / "events.csv"
    first = await _load(settings, path)
    assert first.to_json() == {  # type: ignore[attr-defined]
        "rows": 1000,
        "inserted": 1000,
        "duplicates": 0,
        "skipped": 0,
        "cache_errors": 0,
    }
    assert await _count(settings) == 1000
    again = await _load(settings, path)  # the state file says everything is done
    assert again.to_json()["skipped"] == 1000 and again.to_json()["rows"] == 0  # type: ignore[attr-defined]
    path.with_name("state.json").unlink()
    replay = await _load(settings, path)  # no state: event ids keep it idempotent
    assert replay.to_json()["duplicates"] == 1000 and await _count(settings) == 1000  # type: ignore[attr-defined]


async def test_bad_row_stops_and_a_rerun_resumes(settings: Settings, tmp_path: Path) -> None:
    path = tmp_path / "events.csv"
    rows = [f"u{n % 7},i{n % 11},{1_700_000_000 + n},view" for n in range(250)]
    rows[179] = "u1,i1,1700000000,teleport"  # row 180
    path.write_text("user_id,item_id,timestamp,type\n" + "\n".join(rows) + "\n")
    with pytest.raises(BadRow, match="row 180: type 'teleport'"):
        await _load(settings, path, chunk=50)
    assert await _count(settings) == 150  # three whole chunks committed
    assert read_state(path.with_name("state.json"), _key(path)) == 150
    rows[179] = "u1,i1,1700000000,click"
    path.write_text("user_id,item_id,timestamp,type\n" + "\n".join(rows) + "\n")
    report = await _load(settings, path, chunk=50)  # a new key: ids dedupe
    assert report.to_json()["duplicates"] == 150 and await _count(settings) == 250  # type: ignore[attr-defined]


def _key(path: Path) -> str:
    from app.ingest.bulk import file_key

    return file_key(path)


async def test_drops_the_users_cached_history(pg_settings: Settings, tmp_path: Path) -> None:
    """Redis: the cache another process (the service) reads."""
    settings = pg_settings
    cache = make_cache(settings)
    try:
        seen = await cache.backend.lookup("u1", "mf:v1")
        assert await cache.backend.store(seen, None, ["old"])
        assert await cache.backend.get_history("u1") == ["old"]
        path = tmp_path / "events.csv"
        path.write_text("user,item,type\nu1,i9,view\n")
        await _load(settings, path)
        assert await cache.backend.get_history("u1") is None
    finally:
        await cache.close()


@pytest.mark.parametrize(
    ("header", "row", "message"),
    [
        ("user_id,type", "u1,view", "no item_id column"),
        ("user,item,type", ",i1,view", "row 1: user_id"),
        ("user,item,type,value", "u1,i1,rating,abc", "row 1: value 'abc'"),
        ("user,item,type,timestamp", "u1,i1,view,yesterday", "row 1: timestamp"),
        ("user,item,type,timestamp", "u1,i1,view,100", "outside"),
    ],
)
async def test_bad_files_name_the_row_and_field(
    sqlite_url: str, tmp_path: Path, header: str, row: str, message: str
) -> None:
    path = tmp_path / "events.csv"
    path.write_text(f"{header}\n{row}\n")
    with pytest.raises(BadRow, match=message):
        await _load(Settings(database_url=sqlite_url, redis_url=None), path)


def test_cli_synth_then_load(
    sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RECSYS_DATABASE_URL", sqlite_url)
    get_settings.cache_clear()
    try:
        out = tmp_path / "shop"
        made = runner.invoke(
            cli,
            [
                "data",
                "synth",
                "--out",
                str(out),
                "--items",
                "30",
                "--users",
                "20",
                "--events",
                "300",
            ],
        )
        assert made.exit_code == 0, made.output
        loaded = runner.invoke(cli, ["data", "load", str(out / "events.csv"), "--chunk", "100"])
        assert loaded.exit_code == 0, loaded.output
        assert "'inserted': 300" in loaded.output
        bad = runner.invoke(cli, ["data", "synth", "--out", str(out), "--size", "XL"])
        assert bad.exit_code != 0 and "--size" in bad.output
    finally:
        get_settings.cache_clear()
