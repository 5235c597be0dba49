"""CLI commands for data: recsys data synth (a synthetic shop), recsys data load (bulk events)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from app.cli.ops import with_database
from app.config import Settings

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

data_cli = typer.Typer(help="Datasets: a synthetic shop, bulk loading.", no_args_is_help=True)


@data_cli.command("synth")
def synth_command(
    out: Path = typer.Option(
        ..., help="Output directory: events.csv, catalog.jsonl, summary.json."
    ),
    size: str | None = typer.Option(None, help="A preset: S, M or L (items, users, events)."),
    items: int | None = typer.Option(None, min=1, help="Catalog size (overrides the preset)."),
    users: int | None = typer.Option(None, min=1, help="Users (overrides the preset)."),
    events: int | None = typer.Option(None, min=1, help="Events (overrides the preset)."),
    seed: int = typer.Option(0, help="Random seed: the same seed and sizes give the same files."),
    days: int = typer.Option(180, min=1, help="Days of simulated history."),
) -> None:
    """Write a synthetic shop: power-law popularity, categories and titles, sessions with
    sequential structure, months of timestamps, views to purchases.

    Presets: S = 10k items, 100k users, 1M events; M = 100k, 1M, 10M; L = 1M, 2M, 30M.

    Example: recsys data synth --size S --out var/synth-s
    Then: recsys items import var/synth-s/catalog.jsonl; recsys data load var/synth-s/events.csv
    """
    from tqdm.auto import tqdm

    from models.synth import SIZES, SynthConfig, write_shop

    config = SynthConfig(*_sizes(size, items, users, events, SIZES), seed=seed, days=days)
    with tqdm(total=config.events, unit="event", desc="synth") as bar:
        summary = write_shop(config, out, progress=bar.update)
    typer.echo(f"wrote {summary['events']} events, {config.items} items to {out}")


def _sizes(
    size: str | None,
    items: int | None,
    users: int | None,
    events: int | None,
    presets: dict[str, tuple[int, int, int]],
) -> tuple[int, int, int]:
    """(items, users, events) from a preset and explicit overrides; every one must be known."""
    if size is not None and size.upper() not in presets:
        raise typer.BadParameter(f"expected one of {', '.join(presets)}", param_hint="--size")
    base = presets[size.upper()] if size else (None, None, None)
    chosen = tuple(
        given if given is not None else preset
        for given, preset in zip((items, users, events), base, strict=True)
    )
    if any(value is None for value in chosen):
        raise typer.BadParameter("give --size or all of --items, --users and --events")
    return chosen  # type: ignore[return-value]


@data_cli.command("load")
def load_command(
    path: Path = typer.Argument(..., exists=True, dir_okay=False, help="An events CSV file."),
    chunk: int = typer.Option(100_000, min=1, help="Rows per transaction."),
    state: Path | None = typer.Option(
        None, help="Progress file for resuming (default: FILE.load-state.json)."
    ),
) -> None:
    """Bulk-load an events CSV into RECSYS_DATABASE_URL (COPY on Postgres), resumably.

    Columns (a header names them): user_id (or user), item_id (or item), type, and optionally
    event_id, timestamp (epoch seconds or ISO-8601) and value. Each row is checked as POST
    /events checks an event; a bad row stops the load, naming the row, and what was committed
    before it stays. A rerun resumes after the last committed chunk; event ids keep it
    idempotent. The touched users' cached state is dropped.

    Example: recsys data load var/synth-s/events.csv --chunk 200000
    """
    from tqdm.auto import tqdm

    from app.cache import make_cache
    from app.ingest.bulk import BadRow, load_events

    state_path = state or path.with_name(path.name + ".load-state.json")

    async def work(settings: Settings, sessions: async_sessionmaker[AsyncSession]) -> Any:
        cache = make_cache(settings)
        try:
            with tqdm(unit="event", desc="load") as bar:
                return await load_events(
                    path=path,
                    sessions=sessions,
                    cache=cache,
                    chunk=chunk,
                    state=state_path,
                    progress=bar.update,
                )
        finally:
            await cache.close()

    try:
        report = with_database(work)
    except BadRow as error:
        typer.echo(f"bad row: {error}; rows before its chunk are stored, rerun to resume", err=True)
        raise typer.Exit(1) from None
    typer.echo(report.to_json())
    if report.cache_errors:
        typer.echo("the cache failed for some users: flush it before serving", err=True)


@data_cli.command("prune")
def prune_command(
    events_days: float | None = typer.Option(
        None, min=0.0, help="Delete events older than this (default: RECSYS_EVENT_RETENTION_DAYS)."
    ),
    exposures_days: float | None = typer.Option(
        None,
        min=0.0,
        help="Delete exposures older than this (default: RECSYS_EXPOSURE_RETENTION_DAYS).",
    ),
    batch: int = typer.Option(10_000, min=1, help="Rows per delete transaction."),
) -> None:
    """Delete events and exposures past their retention, in small transactions.

    Nothing is deleted unless a retention is given here or in the settings. Run it from cron
    (or next to `recsys retrain --every`). Pruned events leave training at once, and the users'
    "seen" masks when their cached state is next rebuilt.

    Example: recsys data prune --events-days 365 --exposures-days 90
    """
    from app.ingest.retention import prune

    async def work(settings: Settings, sessions: async_sessionmaker[AsyncSession]) -> Any:
        return await prune(
            sessions,
            event_days=events_days if events_days is not None else settings.event_retention_days,
            exposure_days=exposures_days
            if exposures_days is not None
            else settings.exposure_retention_days,
            batch=batch,
        )

    report = with_database(work)
    if report.events_before is None and report.exposures_before is None:
        typer.echo("no retention configured: nothing deleted", err=True)
    typer.echo(report.to_json())


def register(cli: typer.Typer) -> None:
    """Attach the data commands to the main CLI."""
    cli.add_typer(data_cli, name="data")
