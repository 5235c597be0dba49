"""CLI commands for the model library: train, evaluate, compare."""

import typer


def register(cli: typer.Typer) -> None:
    """Attach the model commands to the main CLI."""
