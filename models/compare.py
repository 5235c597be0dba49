"""Offline comparison: every model on one dataset under one protocol -> Markdown, JSON, charts.

Content and hybrid models read the items' text vectors (`item_features`); on a cold-item split
(models.split.cold_item_split) each row also has the test metrics of the users whose target is
a cold item (`test_cold`) and of the others (`test_warm`).
"""

from __future__ import annotations

import hashlib
import json
import statistics
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from models.base import Recommender, torch_threads
from models.checkpoint import CheckpointError, checkpoint_bytes, load_checkpoint
from models.data import EvalSet, LeaveOneOut, dataset_name
from models.metrics import evaluate
from models.split import cold_test_users
from models.train import save_trained, train_model
from models.zoo import get_model_class

METRIC_COLUMNS = ("hr@10", "ndcg@10", "hr@20", "ndcg@20", "mrr", "coverage@10")


@dataclass
class CompareRow:
    """One model's line in the comparison."""

    model: str
    val: dict[str, float]
    test: dict[str, float]
    train_seconds: float  # wall clock of the validation fit (early stopping included)
    train_cpu_seconds: float  # its CPU time over all threads: wall >> cpu / threads = contention
    refit_seconds: float | None
    ms_per_user: float  # median latency of recommending top-10 for one user (serving path)
    ms_per_user_batched: float  # the same per user, scoring batches of 256 users
    parameters: int
    checkpoint_bytes: int
    reused: bool  # loaded from an existing checkpoint instead of trained
    test_cold: dict[str, float] | None = None  # cold-item split: the users whose target is cold
    test_warm: dict[str, float] | None = None  # ... and the others

    def to_json(self) -> dict[str, Any]:
        """Plain JSON-able dict; the cold and warm slices only on a cold-item split."""
        row = asdict(self)
        return {
            k: v for k, v in row.items() if v is not None or k not in ("test_cold", "test_warm")
        }


@dataclass
class ContentInputs:
    """What content and hybrid models read: the items' text vectors and where they came from."""

    features: np.ndarray  # (I, F) float32, zero rows for items without text
    meta: dict[str, Any]  # e.g. {"catalog": "ml-1m", "encoder": ..., "items_with_text": ...}

    def checkpoint_meta(self) -> dict[str, Any]:
        """meta.json fields of a model trained on them; the service adds new items to a model
        only from the encoder it names (`content_encoder`)."""
        return {"content": self.meta, "content_encoder": self.meta.get("encoder")}


def scoring_latency(model: Recommender, histories: Sequence[np.ndarray], users: int = 200) -> float:
    """Median milliseconds to recommend top-10 for a single user, over `users` users.

    One torch thread, as a serving worker runs (and threads only add overhead for one user).
    """
    sample = list(histories[:users])
    timings = []
    with torch_threads(1):
        model.recommend(sample[:1], k=10)  # warm up lazily built state
        for history in sample:
            start = time.perf_counter()
            model.recommend([history], k=10)
            timings.append(time.perf_counter() - start)
    return 1000 * statistics.median(timings)


def batched_latency(model: Recommender, histories: Sequence[np.ndarray], batch: int = 256) -> float:
    """Milliseconds per user when recommending top-10 for batches of users."""
    sample = list(histories[: 4 * batch])
    start = time.perf_counter()
    for lo in range(0, len(sample), batch):
        model.recommend(sample[lo : lo + batch], k=10)
    return 1000 * (time.perf_counter() - start) / max(len(sample), 1)


def _reusable(directory: Path, fingerprint: str) -> Any | None:
    """A checkpoint in `directory` trained on the same data, or None."""
    try:
        checkpoint = load_checkpoint(directory)
    except CheckpointError:
        return None
    return checkpoint if checkpoint.meta.get("data", {}).get("fingerprint") == fingerprint else None


def _train_or_load(
    name: str,
    data: LeaveOneOut,
    directory: Path,
    overrides: Mapping[str, Any],
    seed: int,
    reuse: bool,
    progress: bool,
    content: ContentInputs | None = None,
) -> tuple[Recommender, dict[str, Any], bool]:
    """The model and its metadata: reused from `directory` when allowed, else trained and saved."""
    if reuse and (found := _reusable(directory, data.fingerprint())) is not None:
        return found.model, found.meta, True
    reads = get_model_class(name).reads_content and content is not None
    features = content.features if reads and content is not None else None
    trained = train_model(
        name, data, overrides, seed=seed, progress=progress, item_features=features
    )
    extra = content.checkpoint_meta() if reads and content is not None else {}
    save_trained(trained.model, trained.report, data, directory, overwrite=True, **extra)
    return trained.model, load_checkpoint(directory).meta, False


def slice_metrics(
    model: Recommender, data: LeaveOneOut, cold_items: np.ndarray
) -> tuple[dict[str, float], dict[str, float]]:
    """Test metrics of the cold slice (target a cold item) and of the warm slice (the rest)."""
    test, cold = data.test_set(), cold_test_users(data, cold_items)
    popularity = data.item_popularity()
    cold_set, warm_set = _subset(test, cold), _subset(test, ~cold)
    return (
        evaluate(model, cold_set, item_popularity=popularity),
        evaluate(model, warm_set, item_popularity=popularity),
    )


def _subset(users: EvalSet, keep: np.ndarray) -> EvalSet:
    """The evaluation users where `keep` (U,) bool is True."""
    rows = np.flatnonzero(keep)
    times = None if users.times is None else [users.times[r] for r in rows]
    return EvalSet([users.histories[r] for r in rows], users.targets[rows], times)


def compare_models(
    data: LeaveOneOut,
    names: Sequence[str],
    out_dir: str | Path,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
    seed: int = 0,
    reuse: bool = False,
    progress: bool = False,
    content: ContentInputs | None = None,
    cold_items: np.ndarray | None = None,
) -> list[CompareRow]:
    """Train (or reuse) each model, measure it, and write compare.md/.json and the charts;
    `content`: the item text vectors content and hybrid models read; `cold_items`: the cold
    items of a cold-item split, whose rows then get their cold and warm test slices."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    test_histories = data.test_set().histories
    rows = []
    for name in names:
        directory = out / "checkpoints" / name
        model, meta, reused = _train_or_load(
            name, data, directory, (overrides or {}).get(name, {}), seed, reuse, progress, content
        )
        cold, warm = (None, None) if cold_items is None else slice_metrics(model, data, cold_items)
        rows.append(
            CompareRow(
                model=name,
                val=meta["metrics"]["val"],
                test=meta["metrics"]["test"],
                train_seconds=meta["train_seconds"],
                train_cpu_seconds=meta.get("train_cpu_seconds", 0.0),
                refit_seconds=meta.get("refit_seconds"),
                ms_per_user=scoring_latency(model, test_histories),
                ms_per_user_batched=batched_latency(model, test_histories),
                parameters=meta["parameters"],
                checkpoint_bytes=checkpoint_bytes(directory),
                reused=reused,
                test_cold=cold,
                test_warm=warm,
            )
        )
    write_reports(rows, data, out, content.meta if content is not None else None, cold_items)
    return rows


COST_COLUMNS = ("train s", "train cpu s", "refit s", "ms/user", "ms/user@256", "params", "MB")


def _metric_table(rows: Sequence[CompareRow], split: str, costs: bool = True) -> list[str]:
    """Markdown table of one split's metrics, with the cost columns unless `costs` is False."""
    head = ["model", *METRIC_COLUMNS, *(COST_COLUMNS if costs else ())]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        metrics = getattr(r, split)
        cells = [r.model, *(f"{metrics[m]:.4f}" for m in METRIC_COLUMNS)]
        lines.append("| " + " | ".join(cells + (_cost_cells(r) if costs else [])) + " |")
    return lines


def _cost_cells(r: CompareRow) -> list[str]:
    """A row's cost columns, formatted."""
    return [
        f"{r.train_seconds:.1f}",
        f"{r.train_cpu_seconds:.1f}",
        "-" if r.refit_seconds is None else f"{r.refit_seconds:.1f}",
        f"{r.ms_per_user:.2f}",
        f"{r.ms_per_user_batched:.3f}",
        f"{r.parameters:,}",
        f"{r.checkpoint_bytes / 1e6:.1f}",
    ]


PROTOCOL = (
    "Full ranking over all items, history excluded, "
    "ties optimistic (rank = 1 + #items scored strictly higher). Validation: fit on train, "
    "input train. Test: refit on train+val with the validation-chosen epochs, input "
    "train+val (a model may serve its refit with its validation fit, as SASRec's "
    "`ensemble_refit` does). `train s`: the validation fit (early stopping included); "
    "`refit s`: the train+val fit; `train cpu s`: CPU seconds of the validation fit over "
    "all threads (the machine is shared: wall >> cpu / threads means contention); "
    "`ms/user`: median top-10 latency for one user; `ms/user@256`: the same in batches "
    "of 256 users."
)


def _cold_sections(
    rows: Sequence[CompareRow], data: LeaveOneOut, cold_items: np.ndarray | None
) -> list[str]:
    """The cold and warm test slices' tables (cold-item split only)."""
    if cold_items is None:
        return []
    cold = int(cold_test_users(data, cold_items).sum())
    recipe = data.meta.get("cold_items", {})
    return [
        f"## Test: cold items ({cold} users whose target is one of the {len(cold_items)} cold "
        "items, which no model saw in train or validation)",
        "",
        f"Cold-item split: {json.dumps(recipe)} (models.split.cold_item_split).",
        "",
        *_metric_table(rows, "test_cold", costs=False),
        "",
        f"## Test: warm items (the other {data.num_users - cold} users)",
        "",
        *_metric_table(rows, "test_warm", costs=False),
        "",
    ]


def write_reports(
    rows: Sequence[CompareRow],
    data: LeaveOneOut,
    out: Path,
    content: Mapping[str, Any] | None = None,
    cold_items: np.ndarray | None = None,
) -> None:
    """compare.md, compare.json and the PNG charts."""
    source = dataset_name(data.meta.get("source", "?"))
    header = (
        f"Dataset `{source}`: {data.num_users} users, {data.num_items} items, "
        f"{data.num_interactions} interactions. {PROTOCOL}"
    )
    if content is not None:
        header += f" Content and hybrid models read the item texts of {json.dumps(content)}."
    lines = ["# Model comparison", "", header, "", "## Test", "", *_metric_table(rows, "test")]
    lines += ["", *_cold_sections(rows, data, cold_items)]
    lines += ["## Validation", "", *_metric_table(rows, "val"), ""]
    (out / "compare.md").write_text("\n".join(lines))
    dataset: dict[str, Any] = {"source": source, "fingerprint": data.fingerprint()}
    if cold_items is not None:
        dataset["cold_items"] = {
            **data.meta.get("cold_items", {}),
            "sha256": _ids_sha(data, cold_items),
        }
    payload = {"dataset": dataset, "content": content, "rows": [r.to_json() for r in rows]}
    (out / "compare.json").write_text(json.dumps(payload, indent=1))
    plot_charts(rows, out)
    if cold_items is not None:
        plot_cold_warm(rows, out)


def _ids_sha(data: LeaveOneOut, items: np.ndarray) -> str:
    """sha256 of the items' ids, comma-separated in index order."""
    return hashlib.sha256(",".join(data.item_ids.ids[i] for i in items).encode()).hexdigest()


def plot_cold_warm(rows: Sequence[CompareRow], out: Path) -> None:
    """Cold vs warm test HR@10 and NDCG@10 per model, as grouped bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names, x = [r.model for r in rows], np.arange(len(rows))
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for ax, metric in zip(axes, ("hr@10", "ndcg@10"), strict=True):
        for shift, split in ((-0.2, "test_cold"), (0.2, "test_warm")):
            values = [(getattr(r, split) or {}).get(metric, 0.0) for r in rows]
            ax.bar(x + shift, values, width=0.4, label=split.removeprefix("test_"))
        ax.set_xticks(x, names, rotation=30, ha="right")
        ax.set(ylabel=f"test {metric.upper()}", title=f"{metric.upper()}: cold vs warm targets")
        ax.legend()
    fig.tight_layout()
    fig.savefig(out / "cold_vs_warm.png", dpi=120)
    plt.close(fig)


def plot_charts(rows: Sequence[CompareRow], out: Path) -> None:
    """Accuracy vs training time, accuracy vs latency, and model size charts."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r.model for r in rows]
    ndcg = [r.test["ndcg@10"] for r in rows]
    for filename, xs, xlabel in (
        ("accuracy_vs_train_time.png", [r.train_seconds for r in rows], "training seconds (log)"),
        ("accuracy_vs_latency.png", [r.ms_per_user for r in rows], "ms per user scored (log)"),
    ):
        fig, ax = plt.subplots(figsize=(5, 3.5))
        ax.scatter(xs, ndcg)
        for x, y, name in zip(xs, ndcg, names, strict=True):
            ax.annotate(name, (x, y), textcoords="offset points", xytext=(4, 4))
        ax.set_xscale("log")
        ax.set(xlabel=xlabel, ylabel="test NDCG@10")
        fig.tight_layout()
        fig.savefig(out / filename, dpi=120)
        plt.close(fig)
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.bar(names, [r.checkpoint_bytes / 1e6 for r in rows])
    ax.set(ylabel="checkpoint MB", title="model size")
    fig.tight_layout()
    fig.savefig(out / "model_size.png", dpi=120)
    plt.close(fig)
