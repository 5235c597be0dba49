"""CLI command `recsys quantize`: an int8 or fp16 checkpoint, served as `<model>-<precision>`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from app.cli.models import DATA_HELP


def _metrics_of(data: str | None) -> Any:
    """A function giving a model's val and test metrics on `data`, or None without data."""
    if data is None:
        return None
    from models.metrics import evaluate
    from models.split import load_dataset

    try:
        dataset = load_dataset(data)
    except FileNotFoundError as exc:
        raise typer.BadParameter(str(exc), param_hint="--data") from exc

    def metrics_of(model: Any, item_ids: Any) -> dict[str, Any]:
        aligned = dataset.with_item_ids(item_ids)
        popularity = aligned.item_popularity()
        return {
            split: evaluate(model, eval_set, item_popularity=popularity)
            for split, eval_set in (("val", aligned.val_set()), ("test", aligned.test_set()))
        }

    return metrics_of


def quantize(
    checkpoint: Path = typer.Option(..., help="Float checkpoint directory (recsys train)."),
    precision: str = typer.Option(..., help="int8 or fp16."),
    out: Path = typer.Option(
        ..., help="Directory to write; serve it as RECSYS_MODEL_DIR/<model>-<precision>/<version>."
    ),
    data: str | None = typer.Option(
        None, help=f"Evaluate the quantized model on this data for its metrics. {DATA_HELP}"
    ),
) -> None:
    """Write an int8 or fp16 copy of a checkpoint: the encoder's linear layers and the item matrix
    compressed (int8: per-row scales), dequantized once at load, served as e.g. sasrec-int8.

    Example: recsys quantize --checkpoint var/models/sasrec/v1 --precision int8
    --out var/models/sasrec-int8/v1 --data ml1m-half-loo
    """
    from models.checkpoint import CheckpointError, checkpoint_bytes
    from models.quantize import PRECISIONS, QuantizeError, quantize_checkpoint

    if precision not in PRECISIONS:
        raise typer.BadParameter(
            f"{precision!r}; choose one of {', '.join(PRECISIONS)}", param_hint="--precision"
        )
    if out.exists():
        raise typer.BadParameter(f"{out} already exists", param_hint="--out")
    try:
        path = quantize_checkpoint(checkpoint, precision, out, _metrics_of(data))
    except CheckpointError as exc:
        raise typer.BadParameter(str(exc), param_hint="--checkpoint") from exc
    except QuantizeError as exc:
        raise typer.BadParameter(str(exc), param_hint="--checkpoint") from exc
    before, after = checkpoint_bytes(checkpoint), checkpoint_bytes(path)
    typer.echo(
        f"{precision} checkpoint: {path} ({after / 1e6:.2f} MB, float {before / 1e6:.2f} MB)"
    )


def register(cli: typer.Typer) -> None:
    """Attach `quantize` to the main CLI."""
    cli.command("quantize")(quantize)
