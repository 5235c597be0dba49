"""Run Alembic migrations programmatically (recsys db upgrade, tests, make run)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

from app.config import PROJECT_ROOT


def migrations_root() -> Path:
    """The directory holding alembic.ini: the source tree, else the working directory (images)."""
    return PROJECT_ROOT if (PROJECT_ROOT / "alembic.ini").is_file() else Path.cwd()


def alembic_config(database_url: str) -> Config:
    """An Alembic config for the project's migrations and the given database."""
    root = migrations_root()
    config = Config(str(root / "alembic.ini"))
    config.set_main_option("script_location", str(root / "migrations"))
    config.attributes["database_url"] = database_url
    config.attributes["configure_logging"] = False
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    """Migrate the database to `revision` (blocking; runs its own event loop)."""
    command.upgrade(alembic_config(database_url), revision)


def downgrade(database_url: str, revision: str) -> None:
    """Migrate the database down to `revision`."""
    command.downgrade(alembic_config(database_url), revision)
