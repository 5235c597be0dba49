"""The comparison's outputs: its rows, compare.md, compare.json, the per-user NDCG@10 arrays
and the charts (models.compare runs the models and fills the rows)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from models.data import LeaveOneOut, dataset_name
from models.split import cold_test_users

METRIC_COLUMNS = ("hr@10", "ndcg@10", "hr@20", "ndcg@20", "mrr", "coverage@10")
SPREAD_COLUMNS = ("hr@10", "ndcg@10")  # shown as mean ± std in the test table
VS_BEST_METRIC = "ndcg@10"
PER_USER_FILE = "per_user_ndcg10.npz"
OPTIONAL_KEYS = ("test_cold", "test_warm")  # in compare.json only on a cold-item split


@dataclass
class CompareRow:
    """One model's line in the comparison; metrics and costs are means over its seeds."""

    model: str
    val: dict[str, float]  # {} for a derived row: its model never had a held-out validation
    test: dict[str, float]
    train_seconds: float  # wall clock of the validation fit (early stopping included)
    train_cpu_seconds: float  # its CPU time over all threads: wall >> cpu / threads = contention
    refit_seconds: float | None
    ms_per_user: float  # median latency of recommending top-10 for one user (serving path)
    ms_per_user_batched: float  # the same per user, scoring batches of 256 users
    parameters: int
    checkpoint_bytes: int
    reused: bool  # every seed loaded from an existing checkpoint instead of trained
    test_cold: dict[str, float] | None = None  # cold-item split: the users whose target is cold
    test_warm: dict[str, float] | None = None  # ... and the others
    seeds: list[int] = field(default_factory=lambda: [0])
    val_std: dict[str, float] | None = None  # sample std over the seeds; None for one seed
    test_std: dict[str, float] | None = None
    test_ci95: dict[str, list[float]] | None = None  # per-user bootstrap [low, high] per metric
    vs_best: dict[str, Any] | None = None  # paired bootstrap of NDCG@10 minus the best row's
    derived_from: str | None = None  # the row whose trained models this one transformed

    def to_json(self) -> dict[str, Any]:
        """Plain JSON-able dict; the cold and warm slices only on a cold-item split."""
        row = asdict(self)
        return {k: v for k, v in row.items() if v is not None or k not in OPTIONAL_KEYS}


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

INTERVALS = (
    "Every row is trained once per seed; its metrics and costs are the means over its seeds. "
    "`± std`: the sample standard deviation over the seeds (training randomness only; blank "
    "for one seed). `Δ ndcg@10 vs best [95% CI]`: the mean per-user difference in test "
    "NDCG@10 between the row and the best row by mean test NDCG@10, each user's NDCG@10 "
    "first averaged over the row's seeds, with the 95% interval of a paired bootstrap over "
    "the test users (10,000 resamples, seed 0; models.metrics.paired_bootstrap). An interval "
    "that includes 0 is no evidence of a difference. compare.json `test_ci95`: the 95% "
    "bootstrap interval over users of each metric's seed-averaged per-user values (none for "
    "coverage@10); the per-user NDCG@10 arrays are in `per_user_ndcg10.npz`."
)

DERIVED = (
    "Derived rows (`derived_from`) transform each seed's trained model of their base row "
    "without training (e.g. quantization): their costs are the transform's, and they have no "
    "validation metrics (the transformed model was refit on train+val)."
)

COST_COLUMNS = ("train s", "train cpu s", "refit s", "ms/user", "ms/user@256", "params", "MB")


def _cell(metrics: Mapping[str, float], std: Mapping[str, float] | None, name: str) -> str:
    """One metric cell: `mean`, `mean ± std` for the spread columns, `-` when missing."""
    if name not in metrics:
        return "-"
    if std is None or name not in SPREAD_COLUMNS:
        return f"{metrics[name]:.4f}"
    return f"{metrics[name]:.4f} ± {std[name]:.4f}"


def _vs_best_cell(row: CompareRow) -> str:
    """The Δ NDCG@10 column: `best`, or the difference with its 95% interval."""
    if row.vs_best is None:
        return "-"
    if row.vs_best["best"] == row.model:
        return "best"
    return f"{row.vs_best['diff']:+.4f} [{row.vs_best['low']:+.4f}, {row.vs_best['high']:+.4f}]"


def _metric_table(rows: Sequence[CompareRow], split: str, costs: bool = True) -> list[str]:
    """Markdown table of one split's metrics, with the cost columns unless `costs` is False;
    the test table adds the spreads and the difference to the best row."""
    test = split == "test"
    names = [f"{m} (mean ± std)" if test and m in SPREAD_COLUMNS else m for m in METRIC_COLUMNS]
    head = ["model", *names, *(["Δ ndcg@10 vs best [95% CI]"] if test else [])]
    head += list(COST_COLUMNS if costs else ())
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        metrics, std = getattr(r, split) or {}, r.test_std if test else None
        cells = [r.model, *(_cell(metrics, std, m) for m in METRIC_COLUMNS)]
        cells += [_vs_best_cell(r)] if test else []
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


def seeds_line(rows: Sequence[CompareRow], requested: Sequence[int]) -> str:
    """The line under the test table: the seeds of each row, naming the rows that ran fewer."""
    runs = "; ".join(f"{r.model} {','.join(map(str, r.seeds))}" for r in rows)
    fewer = [r.model for r in rows if len(r.seeds) < len(requested)]
    capped = f" Fewer seeds than requested: {', '.join(fewer)}." if fewer else ""
    return f"Seeds per row: {runs}.{capped}"


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


def _markdown(
    rows: Sequence[CompareRow],
    data: LeaveOneOut,
    seeds: Sequence[int],
    content: Mapping[str, Any] | None,
    cold_items: np.ndarray | None,
) -> str:
    """compare.md: the protocol, the test table with its intervals, slices, validation."""
    source = dataset_name(data.meta.get("source", "?"))
    header = (
        f"Dataset `{source}`: {data.num_users} users, {data.num_items} items, "
        f"{data.num_interactions} interactions. {PROTOCOL} {INTERVALS}"
    )
    if any(r.derived_from is not None for r in rows):
        header += f" {DERIVED}"
    if content is not None:
        header += f" Content and hybrid models read the item texts of {json.dumps(content)}."
    lines = ["# Model comparison", "", header, "", "## Test", "", *_metric_table(rows, "test")]
    lines += ["", seeds_line(rows, seeds), "", *_cold_sections(rows, data, cold_items)]
    lines += ["## Validation", "", *_metric_table(rows, "val"), ""]
    return "\n".join(lines)


def write_reports(
    rows: Sequence[CompareRow],
    data: LeaveOneOut,
    out: Path,
    content: Mapping[str, Any] | None = None,
    cold_items: np.ndarray | None = None,
    seeds: Sequence[int] = (0,),
) -> None:
    """compare.md, compare.json and the PNG charts."""
    (out / "compare.md").write_text(_markdown(rows, data, seeds, content, cold_items))
    dataset: dict[str, Any] = {
        "source": dataset_name(data.meta.get("source", "?")),
        "fingerprint": data.fingerprint(),
    }
    if cold_items is not None:
        dataset["cold_items"] = {
            **data.meta.get("cold_items", {}),
            "sha256": _ids_sha(data, cold_items),
        }
    payload = {
        "dataset": dataset,
        "content": content,
        "seeds": list(seeds),
        "rows": [r.to_json() for r in rows],
    }
    (out / "compare.json").write_text(json.dumps(payload, indent=1))
    plot_charts(rows, out)
    if cold_items is not None:
        plot_cold_warm(rows, out)


def write_per_user(per_user: Mapping[str, np.ndarray], out: Path) -> None:
    """Each row's seed-averaged per-user test NDCG@10 (U,), row u = the dataset's user u."""
    arrays: dict[str, Any] = {name: np.asarray(values) for name, values in per_user.items()}
    np.savez_compressed(out / PER_USER_FILE, **arrays)


def _ids_sha(data: LeaveOneOut, items: np.ndarray) -> str:
    """sha256 of the items' ids, comma-separated in index order."""
    return hashlib.sha256(",".join(data.item_ids.ids[i] for i in items).encode()).hexdigest()


def _pyplot() -> Any:
    """matplotlib's pyplot on the file-only backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_cold_warm(rows: Sequence[CompareRow], out: Path) -> None:
    """Cold vs warm test HR@10 and NDCG@10 per model, as grouped bars."""
    plt = _pyplot()
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


def _ndcg_errors(rows: Sequence[CompareRow]) -> np.ndarray:
    """(2, R) distances from each row's mean test NDCG@10 down and up to its 95% interval."""
    errors = np.zeros((2, len(rows)))
    for i, r in enumerate(rows):
        interval = (r.test_ci95 or {}).get(VS_BEST_METRIC)
        if interval is not None:
            mean = r.test[VS_BEST_METRIC]
            errors[:, i] = max(mean - interval[0], 0.0), max(interval[1] - mean, 0.0)
    return errors


def plot_charts(rows: Sequence[CompareRow], out: Path) -> None:
    """Accuracy vs training time and vs latency (95% intervals as y error bars), the
    difference to the best row (x error bars) and model size charts."""
    plt = _pyplot()
    names = [r.model for r in rows]
    ndcg, errors = [r.test[VS_BEST_METRIC] for r in rows], _ndcg_errors(rows)
    for filename, xs, xlabel in (
        ("accuracy_vs_train_time.png", [r.train_seconds for r in rows], "training seconds (log)"),
        ("accuracy_vs_latency.png", [r.ms_per_user for r in rows], "ms per user scored (log)"),
    ):
        fig, ax = plt.subplots(figsize=(5, 3.5))
        ax.errorbar(xs, ndcg, yerr=errors, fmt="o", capsize=3)
        for x, y, name in zip(xs, ndcg, names, strict=True):
            ax.annotate(name, (x, y), textcoords="offset points", xytext=(4, 4))
        ax.set_xscale("log")
        ax.set(xlabel=xlabel, ylabel="test NDCG@10 (95% CI)")
        fig.tight_layout()
        fig.savefig(out / filename, dpi=120)
        plt.close(fig)
    plot_vs_best(rows, out)
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.bar(names, [r.checkpoint_bytes / 1e6 for r in rows])
    ax.set(ylabel="checkpoint MB", title="model size")
    fig.tight_layout()
    fig.savefig(out / "model_size.png", dpi=120)
    plt.close(fig)


def plot_vs_best(rows: Sequence[CompareRow], out: Path) -> None:
    """Each row's test NDCG@10 difference to the best row with its paired 95% interval."""
    shown = [(r.model, r.vs_best) for r in rows if r.vs_best is not None]
    if not shown:
        return
    plt = _pyplot()
    diffs = np.array([vs["diff"] for _, vs in shown])
    bounds = np.array([[vs["low"], vs["high"]] for _, vs in shown])
    errors = np.clip(np.stack([diffs - bounds[:, 0], bounds[:, 1] - diffs]), 0, None)
    fig, ax = plt.subplots(figsize=(5.5, 0.5 + 0.4 * max(len(shown), 1)))
    y = np.arange(len(shown))
    ax.errorbar(diffs, y, xerr=errors, fmt="o", capsize=3)
    ax.axvline(0.0, color="grey", linewidth=0.8)
    ax.set_yticks(y, [name for name, _ in shown])
    ax.invert_yaxis()
    ax.set(xlabel="Δ test NDCG@10 vs best (paired bootstrap 95% CI)")
    fig.tight_layout()
    fig.savefig(out / "ndcg_vs_best.png", dpi=120)
    plt.close(fig)
