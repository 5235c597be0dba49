"""CLI commands for the catalog: recsys items import."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from app.cli.ops import with_database
from app.config import Settings

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

    from app.schemas import ItemIn

items_cli = typer.Typer(help="The catalog.", no_args_is_help=True)


def store(items: list[ItemIn], batch: int) -> int:
    """Upsert validated items into the configured database; returns how many were written."""
    # Imported here: the ingest flow pulls in torch, which `recsys --help` need not load.
    from app.ingest.catalog import import_items

    async def work(_: Settings, sessions: async_sessionmaker[AsyncSession]) -> int:
        async with sessions() as session:
            return await import_items(session=session, items=items, batch=batch)

    return with_database(work)


def checked_catalog(path: Path) -> list[ItemIn]:
    """The catalog file's items, checked as PUT /items checks them; exits 1 on the first error."""
    from app.ingest.catalog import BadCatalogItem, validate_catalog
    from models.catalog import load_catalog

    try:
        return validate_catalog(load_catalog(path))
    except BadCatalogItem as error:
        typer.echo(f"bad item: {error}; nothing imported", err=True)
    except (OSError, ValueError) as error:
        typer.echo(f"cannot load {path}: {error}; nothing imported", err=True)
    raise typer.Exit(1)


@items_cli.command("import")
def import_command(
    path: Path = typer.Argument(
        ..., help="A CSV/TSV, a JSONL file, or a MovieLens directory (ml-100k, ml-1m, ml-latest)."
    ),
    batch: int = typer.Option(1000, "--batch", min=1, help="Items per insert statement."),
) -> None:
    """Upsert a catalog file into RECSYS_DATABASE_URL, each item checked as PUT /items does.

    A bad item stops the import before anything is written; a repeated id keeps its last entry.

    CSV: item_id (or itemid, movieId, id), title, description, categories "a|b", price, active.

    Other CSV columns become string attributes. JSONL: one object a line with those fields.

    Example: recsys items import ../shared/datasets/ml-100k --batch 500
    """
    written = store(checked_catalog(path), batch)
    typer.echo(f"imported {written} items from {path}")


def register(cli: typer.Typer) -> None:
    """Attach the catalog commands to the main CLI."""
    cli.add_typer(items_cli, name="items")
