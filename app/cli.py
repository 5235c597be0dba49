"""Command line interface: recsys."""

import typer

cli = typer.Typer(help="recsys: recommendation service and model toolkit.", no_args_is_help=True)


def main() -> None:
    """Entry point for the `recsys` console script."""
    cli()
