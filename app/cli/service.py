"""CLI commands for the service: serve and db."""

from __future__ import annotations

import typer

from app.config import get_settings

db_cli = typer.Typer(help="Database schema commands.", no_args_is_help=True)


@db_cli.command("upgrade")
def db_upgrade(
    revision: str = typer.Argument("head", help="Target revision."),
    url: str | None = typer.Option(None, help="Database URL (default: RECSYS_DATABASE_URL)."),
) -> None:
    """Migrate the database to the latest schema.

    Example: RECSYS_DATABASE_URL=postgresql+asyncpg://postgres@127.0.0.1/recsys recsys db upgrade
    """
    from app.db.migrate import upgrade

    target = url or get_settings().database_url
    upgrade(target, revision)
    typer.echo(f"database at {revision}: {target.split('@')[-1]}")


@db_cli.command("downgrade")
def db_downgrade(
    revision: str = typer.Argument(..., help="Target revision, e.g. base."),
    url: str | None = typer.Option(None, help="Database URL (default: RECSYS_DATABASE_URL)."),
) -> None:
    """Migrate the database down. Example: recsys db downgrade base"""
    from app.db.migrate import downgrade

    downgrade(url or get_settings().database_url, revision)


def serve(
    host: str = typer.Option("127.0.0.1", help="Interface to bind."),
    port: int = typer.Option(8000, help="Port."),
    workers: int = typer.Option(1, min=1, help="Worker processes (more than 1 needs Redis)."),
    access_log: bool = typer.Option(False, help="Uvicorn's own access log (ours is JSON)."),
) -> None:
    """Run the HTTP service with uvicorn. Example: recsys serve --host 0.0.0.0 --port 8000

    Several workers need a shared cache (RECSYS_REDIS_URL): with the in-process one, each
    worker would keep its own copy of a user's state, and an event taken by one worker would
    not reach the lists another serves (read-your-writes), so that is refused.
    """
    import uvicorn

    if workers > 1 and not get_settings().redis_url:
        typer.echo(
            f"--workers {workers} needs RECSYS_REDIS_URL: the in-process cache is per worker, "
            "so one worker would serve lists that miss the events another took",
            err=True,
        )
        raise typer.Exit(2)

    if workers > 1 and get_settings().demo_models:
        _train_demo_once()  # else every worker would train (and write) the demo models at once

    uvicorn.run(
        "app.main:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        access_log=access_log,
        log_config=None,
    )


def _train_demo_once() -> None:
    """Seed and train the demo models before the workers start (a no-op when checkpoints exist)."""
    import asyncio

    from app.db.session import make_engine, make_sessionmaker
    from app.training.demo import ensure_demo

    settings = get_settings()

    async def work() -> None:
        engine = make_engine(settings.database_url, pool=False)
        try:
            await ensure_demo(settings, make_sessionmaker(engine))
        finally:
            await engine.dispose()

    asyncio.run(work())


def register(cli: typer.Typer) -> None:
    """Attach the service commands to the main CLI."""
    cli.add_typer(db_cli, name="db")
    cli.command("serve")(serve)
