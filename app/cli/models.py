"""CLI commands for the model library: train, evaluate, compare."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

DATA_HELP = (
    "A split directory (train/val/test TSV, e.g. ml1m-half-loo) or a raw ratings file "
    "(u.data, ratings.dat, ratings.csv, CSV/TSV; 5-core + leave-one-out). Relative paths "
    "are also looked up under RECSYS_DATA_DIR."
)


def parse_settings(items: list[str]) -> dict[str, str]:
    """`--set key=value` options (models.zoo.parse_overrides), a bad one as a CLI error."""
    from models.zoo import parse_overrides

    try:
        return parse_overrides(items)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--set") from exc


def parse_model_settings(items: list[str]) -> dict[str, dict[str, str]]:
    """`--set model.key=value` options (models.zoo.parse_model_overrides), as for the CLI."""
    from models.zoo import parse_model_overrides

    try:
        return parse_model_overrides(items)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--set") from exc


def _load_data(path: str) -> Any:
    """Load a dataset, turning a missing path into a CLI error."""
    from models.split import load_dataset

    try:
        return load_dataset(path)
    except FileNotFoundError as exc:
        raise typer.BadParameter(str(exc), param_hint="--data") from exc


CATALOG_HELP = (
    "Item texts for content and hybrid models (content, mf-hybrid, sasrec-hybrid): a catalog "
    "CSV/JSONL or a MovieLens directory (e.g. ml-1m, also looked up under RECSYS_DATA_DIR); "
    "encoded once by the packaged sentence encoder and cached in --content-cache."
)


def _content_inputs(dataset: Any, catalog: str | None, cache: Path) -> Any:
    """The dataset items' text vectors from `catalog` (models.compare.ContentInputs), or None."""
    if catalog is None:
        return None
    from models.compare import ContentInputs
    from models.content import TextEncoder, VectorCache, item_features, load_item_texts
    from models.data import dataset_name

    try:
        texts = load_item_texts(catalog)
    except (FileNotFoundError, ValueError) as exc:
        raise typer.BadParameter(str(exc), param_hint="--catalog") from exc
    encoder = TextEncoder()
    features, has_text = item_features(dataset.item_ids, texts, encoder, VectorCache(cache))
    meta = {
        "catalog": dataset_name(catalog),
        "encoder": encoder.name,
        "items_with_text": int(has_text.sum()),
    }
    typer.echo(f"item texts: {meta['items_with_text']} of {len(has_text)} items from {catalog}")
    return ContentInputs(features=features, meta=meta)


def _print_metrics(title: str, metrics: dict[str, float]) -> None:
    """One line of rounded metrics."""
    typer.echo(f"{title}: " + "  ".join(f"{k} {v:.4f}" for k, v in metrics.items()))


def train(
    model: str = typer.Option(..., help="Model name: mf, sasrec, popularity or ease."),
    data: str = typer.Option(..., help=DATA_HELP),
    out: Path = typer.Option(..., help="Checkpoint directory to write (one version)."),
    settings: list[str] = typer.Option([], "--set", help="Config override key=value (repeat)."),
    seed: int = typer.Option(0, help="Random seed."),
    refit: bool = typer.Option(True, help="Refit on train+val before the test evaluation."),
    overwrite: bool = typer.Option(False, help="Replace an existing checkpoint directory."),
    catalog: str | None = typer.Option(None, help=CATALOG_HELP),
    content_cache: Path = typer.Option(Path("var/content-cache"), help="Text vector cache."),
) -> None:
    """Train a model, evaluate it on validation and test, and save a checkpoint.

    Example: recsys train --model mf --data ml1m-half-loo --out var/models/mf-v1 --set factors=128
    Content: recsys train --model sasrec-hybrid --data ml1m-half-loo --catalog ml-1m --out DIR
    """
    from models.train import save_trained, train_model

    dataset = _load_data(data)
    content = _content_inputs(dataset, catalog, content_cache)
    features = None if content is None else content.features
    try:
        trained = train_model(
            model,
            dataset,
            parse_settings(settings),
            seed=seed,
            refit=refit,
            progress=True,
            item_features=features,
        )
    except (KeyError, ValueError, TypeError) as exc:
        raise typer.BadParameter(str(exc)) from exc
    report = trained.report
    extra = {} if content is None else content.checkpoint_meta()
    path = save_trained(trained.model, report, dataset, out, overwrite=overwrite, **extra)
    _print_metrics("val ", report.val)
    _print_metrics("test", report.test)
    refit_note = "" if report.refit_seconds is None else f", refit {report.refit_seconds:.1f} s"
    typer.echo(f"trained in {report.train_seconds:.1f} s{refit_note}; checkpoint: {path}")


def evaluate(
    checkpoint: Path = typer.Option(..., help="Checkpoint directory written by `recsys train`."),
    data: str = typer.Option(..., help=DATA_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of text."),
) -> None:
    """Evaluate a checkpoint on a dataset's validation and test users (full ranking).

    Items the checkpoint does not know are dropped from histories and count as misses.
    Example: recsys evaluate --checkpoint var/models/mf-v1 --data ml1m-half-loo
    """
    from models.checkpoint import CheckpointError, load_checkpoint
    from models.metrics import evaluate as evaluate_model

    try:
        loaded = load_checkpoint(checkpoint)
    except CheckpointError as exc:
        raise typer.BadParameter(str(exc), param_hint="--checkpoint") from exc
    dataset = _load_data(data).with_item_ids(loaded.item_ids)
    popularity = dataset.item_popularity()
    results = {
        split: evaluate_model(loaded.model, eval_set, item_popularity=popularity)
        for split, eval_set in (("val", dataset.val_set()), ("test", dataset.test_set()))
    }
    if as_json:
        typer.echo(json.dumps(results, indent=1))
        return
    for split, metrics in results.items():
        _print_metrics(f"{split:4}", metrics)
    if loaded.meta.get("trained_on") == "train+val":
        typer.echo(
            "note: this checkpoint was refit on train+val, so its val numbers are not "
            "held out; the ones from training time are in meta.json (metrics.val)."
        )


def compare(
    data: str = typer.Option(..., help=DATA_HELP),
    out: Path = typer.Option(..., help="Output directory: compare.md/.json, PNGs, checkpoints/."),
    models: str = typer.Option(
        "popularity,ease,mf,sasrec", help="Comma-separated model names to compare."
    ),
    settings: list[str] = typer.Option([], "--set", help="Override model.key=value (repeat)."),
    seed: int = typer.Option(0, help="Random seed."),
    reuse: bool = typer.Option(False, help="Reuse checkpoints in OUT/checkpoints trained on DATA."),
    catalog: str | None = typer.Option(None, help=CATALOG_HELP),
    content_cache: Path = typer.Option(Path("var/content-cache"), help="Text vector cache."),
    cold_items: float | None = typer.Option(
        None,
        help="Evaluate on the cold-item split (models.split.cold_item_split): this fraction of "
        "the items with >= 5 interactions leaves train and validation; adds cold/warm slices.",
    ),
) -> None:
    """Train (or reuse) several models on one dataset and write a comparison table and charts.

    Example: recsys compare --data ml1m-half-loo --out var/compare --models popularity,ease,mf
    Cold items: recsys compare --data ml1m-half-loo --catalog ml-1m --cold-items 0.1
    --models popularity,mf,mf-hybrid,content --out var/cold
    """
    from models.compare import compare_models
    from models.split import cold_item_split

    names = [n.strip() for n in models.split(",") if n.strip()]
    dataset, cold = _load_data(data), None
    if cold_items is not None:
        dataset, cold = cold_item_split(dataset, fraction=cold_items)
    content = _content_inputs(dataset, catalog, content_cache)
    overrides = parse_model_settings(settings)
    try:
        compare_models(dataset, names, out, overrides, seed, reuse, True, content, cold)
    except (KeyError, ValueError, TypeError) as exc:
        raise typer.BadParameter(str(exc)) from exc
    typer.echo((out / "compare.md").read_text())


def register(cli: typer.Typer) -> None:
    """Attach the model commands to the main CLI."""
    cli.command("train")(train)
    cli.command("evaluate")(evaluate)
    cli.command("compare")(compare)
