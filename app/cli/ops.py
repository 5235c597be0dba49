"""CLI commands that operate a deployment: retrain, models list|promote|rollback."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import typer
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.config import Settings, get_settings
from app.db import repo
from app.db.session import make_engine, make_sessionmaker

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
) -> None:
    """Train on the stored events, register new versions, promote those not worse than active.

    Example: recsys retrain --models mf,sasrec --set sasrec.max_seconds=600 --every 6h
    """
    from app.cli.models import parse_model_settings

    names = [m for m in models.split(",") if m] or list(get_settings().retrain_models)
    overrides = parse_model_settings(setting)
    interval = parse_duration(every) if every else None
    while True:
        started = time.monotonic()
        for outcome in retrain_once(names, overrides):
            typer.echo(json.dumps(outcome, default=str))
        if interval is None:
            return
        time.sleep(max(0.0, interval - (time.monotonic() - started)))


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


def _activate(pick: Callable[[list[Any]], Any]) -> Callable[[Settings, Any], Awaitable[str]]:
    """A database task that activates the version `pick` selects from the listed rows."""

    async def work(_: Settings, sessions: async_sessionmaker[AsyncSession]) -> str:
        async with sessions() as session:
            rows = await repo.model_versions(session=session)
            row = pick(rows)
            await repo.activate_version(session=session, version=row)
            return f"{row.model_name} {row.version} is active"

    return work


@models_cli.command("promote")
def promote(
    version: str = typer.Argument(..., help="A version from `recsys models list`."),
) -> None:
    """Make a registered version active; replicas switch within seconds.

    Example: recsys models promote mf-20261128093000-abc123
    """

    def pick(rows: list[Any]) -> Any:
        found = [r for r in rows if r.version == version]
        if not found:
            raise typer.BadParameter(f"no registered version {version!r}")
        return found[0]

    typer.echo(with_database(_activate(pick)))


@models_cli.command("rollback")
def rollback(name: str = typer.Argument(..., help="Model name, e.g. sasrec.")) -> None:
    """Re-activate the version that was active before the current one.

    Example: recsys models rollback sasrec
    """

    def pick(rows: list[Any]) -> Any:
        mine = [r for r in rows if r.model_name == name]
        active = [r for r in mine if r.status == "active"]
        previous = [
            r
            for r in mine
            if r.status == "retired"
            and r.promoted_at is not None
            and (not active or r.id < active[0].id)
        ]
        if not previous:
            raise typer.BadParameter(f"{name} has no earlier active version to roll back to")
        return max(previous, key=lambda r: r.promoted_at)

    typer.echo(with_database(_activate(pick)))


def register(cli: typer.Typer) -> None:
    """Attach the operations commands to the main CLI."""
    cli.command("retrain")(retrain_command)
    cli.add_typer(models_cli, name="models")
