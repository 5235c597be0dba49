"""CLI commands that operate a deployment: retrain, models list|promote|rollback."""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import typer
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.config import Settings, get_settings
from app.db import repo
from app.db.session import make_engine, make_sessionmaker

log = logging.getLogger(__name__)
models_cli = typer.Typer(help="Registered model versions.", no_args_is_help=True)
T = TypeVar("T")
DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")


def parse_duration(text: str) -> float:
    """'90s', '15m', '1h', '1d' -> seconds."""
    match = DURATION.match(text.strip())
    if not match:
        raise typer.BadParameter(f"expected a duration like 30m or 1h, got {text!r}")
    return float(match[1]) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[match[2]]


def with_database(work: Callable[[Settings, async_sessionmaker[AsyncSession]], Awaitable[T]]) -> T:
    """Run `work` with the configured database, disposing of the engine afterwards."""
    settings = get_settings()

    async def run() -> T:
        engine = make_engine(settings.database_url)
        try:
            return await work(settings, make_sessionmaker(engine))
        finally:
            await engine.dispose()

    return asyncio.run(run())


def retrain_once(models: list[str], overrides: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """One retrain run; returns each model's outcome."""
    from app.training.retrain import retrain

    async def work(settings: Settings, sessions: async_sessionmaker[AsyncSession]) -> list[Any]:
        return await retrain(settings, sessions, models, overrides)

    return [outcome.to_json() for outcome in with_database(work)]


def retrain_command(
    models: str = typer.Option("", help="Comma-separated models (default: RECSYS_RETRAIN_MODELS)."),
    every: str = typer.Option("", help="Repeat forever at this interval, e.g. 1h (default: once)."),
    setting: list[str] = typer.Option([], "--set", help="model.key=value config override."),
    heartbeat: Path | None = typer.Option(
        None, help="With --every: a file touched while the loop works (for health checks)."
    ),
    runs: int | None = typer.Option(None, min=1, help="With --every: stop after this many runs."),
) -> None:
    """Train on the stored events, register new versions, promote those not worse than active.

    Too little data yet (RECSYS_RETRAIN_MIN_USERS) is said and exits 0. With --every, an
    unreachable database is retried with backoff, and no failure ends the loop.

    Example: recsys retrain --models mf,sasrec --set sasrec.max_seconds=600 --every 6h
    """
    from app.cli.models import parse_model_settings
    from app.observability import configure_logging
    from app.training.loop import RetrainLoop, is_transient

    settings = get_settings()
    configure_logging(settings.log_level, json_logs=settings.log_json)
    names = [m for m in models.split(",") if m] or list(settings.retrain_models)
    overrides = parse_model_settings(setting)
    if not every:
        try:
            run_and_report(names, overrides)
        except Exception as error:
            if not is_transient(error):
                raise
            typer.echo(f"database unreachable: {type(error).__name__}: {error}", err=True)
            raise typer.Exit(1) from None
        return
    loop = RetrainLoop(
        run=lambda: run_and_report(names, overrides, looping=True),
        interval_s=parse_duration(every),
        retry_s=settings.retrain_retry_s,
        retry_max_s=settings.retrain_retry_max_s,
        heartbeat=heartbeat,
        runs=runs,
    )
    loop.forever()


def run_and_report(
    names: list[str], overrides: dict[str, dict[str, Any]], *, looping: bool = False
) -> None:
    """One retrain run, each outcome printed as a JSON line; too little data is said (printed,
    or logged as a warning in the loop, whose output is the container's log), not raised."""
    from app.training.retrain import TooLittleData

    try:
        outcomes = retrain_once(names, overrides)
    except TooLittleData as error:
        if looping:
            log.warning("%s", error)
        else:
            typer.echo(str(error))
        return
    for outcome in outcomes:
        typer.echo(json.dumps(outcome, default=str))


@models_cli.command("list")
def list_versions(name: str = typer.Argument(None, help="Only this model.")) -> None:
    """Registered versions, newest first. Example: recsys models list sasrec"""

    async def work(_: Settings, sessions: async_sessionmaker[AsyncSession]) -> list[Any]:
        async with sessions() as session:
            return await repo.model_versions(session=session, name=name)

    for row in with_database(work):
        ndcg = (row.metrics.get("val") or {}).get("ndcg@10")
        typer.echo(
            f"{row.model_name:10} {row.version:36} {row.status:9} "
            f"val_ndcg@10={ndcg if ndcg is None else round(ndcg, 4)}  {row.reason or ''}"
        )


def _activate(
    change: Callable[[AsyncSession], Awaitable[Any]],
) -> Callable[[Settings, Any], Awaitable[str]]:
    """A database task that runs one of app.training.promotion's changes; its refusal (an
    unknown version, nothing to roll back to) becomes the CLI's usage error."""
    from app.errors import Conflict, NotFound

    async def work(_: Settings, sessions: async_sessionmaker[AsyncSession]) -> str:
        async with sessions() as session:
            try:
                row = await change(session)
            except (NotFound, Conflict) as error:
                raise typer.BadParameter(str(error)) from None
            return f"{row.model_name} {row.version} is active"

    return work


@models_cli.command("promote")
def promote(
    version: str = typer.Argument(..., help="A version from `recsys models list`."),
) -> None:
    """Make a registered version active; replicas switch within seconds.

    Example: recsys models promote mf-20261128093000-abc123
    """
    from app.training import promotion

    typer.echo(with_database(_activate(lambda s: promotion.promote(session=s, version=version))))


@models_cli.command("rollback")
def rollback(name: str = typer.Argument(..., help="Model name, e.g. sasrec.")) -> None:
    """Re-activate the version that was active before the current one.

    Example: recsys models rollback sasrec
    """
    from app.training import promotion

    typer.echo(with_database(_activate(lambda s: promotion.rollback(session=s, name=name))))


@models_cli.command("prune")
def prune(
    keep: int = typer.Option(..., "--keep", min=0, help="Retired versions kept per model."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Only list what would go."),
) -> None:
    """Delete retired versions (directory and row) beyond the newest N per model; active and
    candidate versions are never touched.

    Example: recsys models prune --keep 3
    """
    from app.training.prune import prune_retired

    async def work(_: Settings, sessions: async_sessionmaker[AsyncSession]) -> list[Any]:
        return await prune_retired(sessions, keep, dry_run=dry_run)

    rows = with_database(work)
    verb = "would delete" if dry_run else "deleted"
    for row in rows:
        typer.echo(f"{verb} {row.model_name} {row.version} {row.path}")
    typer.echo(f"{len(rows)} retired version(s) {verb}")


def register(cli: typer.Typer) -> None:
    """Attach the operations commands to the main CLI."""
    cli.command("retrain")(retrain_command)
    cli.add_typer(models_cli, name="models")
