"""Command line interface: recsys."""

import typer

from app.cli import data as cli_data
from app.cli import items as cli_items
from app.cli import models as cli_models
from app.cli import ops as cli_ops
from app.cli import quantize as cli_quantize
from app.cli import service as cli_service

cli = typer.Typer(help="recsys: recommendation service and model toolkit.", no_args_is_help=True)
cli_service.register(cli)
cli_models.register(cli)
cli_ops.register(cli)
cli_items.register(cli)
cli_data.register(cli)
cli_quantize.register(cli)


def main() -> None:
    """Entry point for the `recsys` console script."""
    cli()
