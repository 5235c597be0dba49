"""CLI commands for the model library: train, evaluate, compare."""

from __future__ import annotations

import json
import subprocess
import sys
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
    model: str = typer.Option(
        ...,
        help="Model name: popularity, ease, ials, mf, neumf, gru4rec, sasrec, content, "
        "mf-hybrid or sasrec-hybrid.",
    ),
    data: str = typer.Option(..., help=DATA_HELP),
    out: Path = typer.Option(..., help="Checkpoint directory to write (one version)."),
    settings: list[str] = typer.Option([], "--set", help="Config override key=value (repeat)."),
    seed: int = typer.Option(0, help="Random seed."),
    refit: bool = typer.Option(True, help="Refit on train+val before the test evaluation."),
    overwrite: bool = typer.Option(False, help="Replace an existing checkpoint directory."),
    catalog: str | None = typer.Option(None, help=CATALOG_HELP),
    content_cache: Path = typer.Option(Path("var/content-cache"), help="Text vector cache."),
    nproc: int = typer.Option(
        1, min=1, help="Data-parallel processes (sasrec, gru4rec): re-runs under torchrun."
    ),
) -> None:
    """Train a model, evaluate it on validation and test, and save a checkpoint.

    Example: recsys train --model mf --data ml1m-half-loo --out var/models/mf-v1 --set factors=128
    Content: recsys train --model sasrec-hybrid --data ml1m-half-loo --catalog ml-1m --out DIR
    Data-parallel: recsys train --model sasrec --data ml1m-half-loo --out DIR --nproc 2
    """
    from models.train import save_trained, train_model

    if nproc > 1:
        if catalog is not None or model not in ("sasrec", "gru4rec"):
            raise typer.BadParameter(
                "data-parallel training covers sasrec and gru4rec, without --catalog",
                param_hint="--nproc",
            )
        command = _torchrun_command(nproc, model, data, out, settings, seed, refit, overwrite)
        raise typer.Exit(subprocess.run(command, check=False).returncode)
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


def _torchrun_command(
    nproc: int,
    model: str,
    data: str,
    out: Path,
    settings: list[str],
    seed: int,
    refit: bool,
    overwrite: bool,
) -> list[str]:
    """`recsys train`'s arguments as a torchrun launch of models.distributed."""
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc)]
    command += ["-m", "models.distributed", "--model", model, "--data", data, "--out", str(out)]
    command += ["--seed", str(seed), *(f"--set={item}" for item in settings)]
    return command + (["--no-refit"] if not refit else []) + (["--overwrite"] if overwrite else [])


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


SEEDS_HELP = "Comma-separated seeds, one run of every model each, e.g. 0,1,2 (default: --seed)."
MAX_SEEDS_HELP = "MODEL=N: run MODEL with only the first N seeds (slow models; repeat)."
DERIVE_HELP = (
    "NAME[=BASE]: add row NAME made from each seed's trained BASE model without training; "
    "NAME ends in -int8 or -fp16 (models.quantize.quantize_model at that precision); BASE "
    "defaults to NAME without that suffix and must be in --models (repeat)."
)
# A derived row's name suffix -> the models.quantize precision that makes it.
DERIVE_PRECISIONS = {"-int8": "int8", "-fp16": "fp16"}


def parse_seeds(seeds: str | None, seed: int) -> list[int]:
    """`--seeds 0,1,2`, else the single `--seed`."""
    if seeds is None:
        return [seed]
    try:
        return [int(s) for s in seeds.split(",") if s.strip()]
    except ValueError as exc:
        raise typer.BadParameter(
            f"{seeds!r}: expected integers like 0,1,2", param_hint="--seeds"
        ) from exc


def parse_max_seeds(items: list[str]) -> dict[str, int]:
    """`--max-seeds MODEL=N` options."""
    caps = {}
    for item in items:
        name, _, count = item.partition("=")
        if not count.strip().isdigit():
            raise typer.BadParameter(f"{item!r}: expected MODEL=N", param_hint="--max-seeds")
        caps[name.strip()] = int(count)
    return caps


def _quantizer(precision: str) -> Any:
    """A transform quantizing a trained model to `precision` (models.quantize, loaded lazily)."""
    try:
        from models.quantize import quantize_model
    except ImportError as exc:
        raise typer.BadParameter(
            f"a {precision} row needs models.quantize.quantize_model, which cannot be "
            f"imported here ({exc})",
            param_hint="--derive",
        ) from exc
    return lambda model: quantize_model(model, precision)


def parse_derived(items: list[str]) -> dict[str, Any]:
    """`--derive NAME[=BASE]` options as models.compare.Derived rows, by name."""
    from models.compare import Derived

    derived = {}
    for item in items:
        name, _, base = (part.strip() for part in item.partition("="))
        suffix = next((s for s in DERIVE_PRECISIONS if name.endswith(s)), None)
        if suffix is None or name == suffix:
            ends = " or ".join(DERIVE_PRECISIONS)
            raise typer.BadParameter(
                f"{name!r}: a derived row's name ends in {ends}", param_hint="--derive"
            )
        transform = _quantizer(DERIVE_PRECISIONS[suffix])
        derived[name] = Derived(base=base or name.removesuffix(suffix), transform=transform)
    return derived


def compare(
    data: str = typer.Option(..., help=DATA_HELP),
    out: Path = typer.Option(..., help="Output directory: compare.md/.json, PNGs, checkpoints/."),
    models: str = typer.Option(
        "popularity,ease,mf,sasrec", help="Comma-separated model names to compare."
    ),
    settings: list[str] = typer.Option([], "--set", help="Override model.key=value (repeat)."),
    seed: int = typer.Option(0, help="Random seed (when --seeds is not given)."),
    seeds: str | None = typer.Option(None, help=SEEDS_HELP),
    max_seeds: list[str] = typer.Option([], "--max-seeds", help=MAX_SEEDS_HELP),
    derive: list[str] = typer.Option([], "--derive", help=DERIVE_HELP),
    reuse: bool = typer.Option(
        False, help="Reuse each seed's checkpoint in OUT/checkpoints/MODEL/seed-N trained on DATA."
    ),
    catalog: str | None = typer.Option(None, help=CATALOG_HELP),
    content_cache: Path = typer.Option(Path("var/content-cache"), help="Text vector cache."),
    cold_items: float | None = typer.Option(
        None,
        help="Evaluate on the cold-item split (models.split.cold_item_split): this fraction of "
        "the items with >= 5 interactions leaves train and validation; adds cold/warm slices.",
    ),
) -> None:
    """Train (or reuse) several models on one dataset and write a comparison table and charts.

    Each model runs once per seed; the table gives mean ± std over the seeds and each model's
    NDCG@10 difference to the best one with its paired bootstrap 95% interval over users.
    Example: recsys compare --data ml1m-half-loo --out var/compare --models popularity,ease,mf
    Seeds: recsys compare --data ml1m-half-loo --out var/compare --models mf,sasrec
    --seeds 0,1,2 --max-seeds sasrec=1 --derive sasrec-int8=sasrec
    Cold items: recsys compare --data ml1m-half-loo --catalog ml-1m --cold-items 0.1
    --models popularity,mf,mf-hybrid,content --out var/cold
    """
    from models.compare import compare_models
    from models.split import cold_item_split

    names = [n.strip() for n in models.split(",") if n.strip()]
    run_seeds, caps = parse_seeds(seeds, seed), parse_max_seeds(max_seeds)
    derived = parse_derived(derive)
    dataset, cold = _load_data(data), None
    if cold_items is not None:
        dataset, cold = cold_item_split(dataset, fraction=cold_items)
    content = _content_inputs(dataset, catalog, content_cache)
    overrides = parse_model_settings(settings)
    try:
        compare_models(
            dataset,
            names,
            out,
            overrides,
            reuse=reuse,
            progress=True,
            content=content,
            cold_items=cold,
            seeds=run_seeds,
            max_seeds=caps,
            derived=derived,
        )
    except (KeyError, ValueError, TypeError) as exc:
        raise typer.BadParameter(str(exc)) from exc
    typer.echo((out / "compare.md").read_text())


def register(cli: typer.Typer) -> None:
    """Attach the model commands to the main CLI."""
    cli.command("train")(train)
    cli.command("evaluate")(evaluate)
    cli.command("compare")(compare)
