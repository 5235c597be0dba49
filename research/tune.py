"""Grid search of a zoo model's hyperparameters on VALIDATION only (test is never read).

Usage:
  nice python -m research.tune --model mf --set factors=64,128 --set unobserved_weight=0.1,0.3
  nice python -m research.tune --model sasrec --tag lr3e-3 --set lr=0.003 --set threads=1
  nice python -m research.tune --model sasrec-hybrid --catalog ml-1m --set content=add,init
  python -m research.tune --model sasrec --render
Every point of the grid (the product of the comma-separated `--set` values) is fit on train
with early stopping on val and appended as one JSON line (config, validation NDCG@10 and HR@10,
best epoch, timings, the validation curve, the machine load while it ran; the catalog whose
item texts content and hybrid models read, `--catalog`) to
research/results/tuning_<model>.jsonl; --render prints the Markdown table of every recorded run,
best validation NDCG@10 first.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from models.data import LeaveOneOut
from models.metrics import evaluate
from models.zoo import build_model, parse_overrides
from research.common import RESULTS, catalog_features, load_validation

# Config fields that say how a run was executed, not what was trained: never table columns.
RUN_FIELDS = ("num_items", "progress", "threads", "device", "chunk_elements")


def grid(items: Sequence[str]) -> list[dict[str, str]]:
    """`key=v1,v2` items -> every combination of their values, as override dicts."""
    choices = {k: v.split(",") for k, v in parse_overrides(items).items()}
    return [
        dict(zip(choices, values, strict=True)) for values in itertools.product(*choices.values())
    ]


def run_point(
    name: str,
    data: LeaveOneOut,
    overrides: dict[str, str],
    tag: str,
    item_features: np.ndarray | None = None,
) -> dict[str, Any]:
    """Fit one config with early stopping on validation: its tuning-log row."""
    model = build_model(name, data.num_items, overrides, item_features)
    load_before, start = os.getloadavg()[0], time.perf_counter()
    report = model.fit(data.train, data.val_set(), data.train_times)
    seconds = time.perf_counter() - start
    val = evaluate(model, data.val_set(), ks=(10,))  # the kept (best) state
    history = report.get("history", [])
    return {
        "tag": tag,
        "config": model.config_dict(),
        "val_ndcg@10": round(val["ndcg@10"], 4),
        "val_hr@10": round(val["hr@10"], 4),
        # the early-stopping metric as the model computed it (NeuMF: its learned users)
        "fit_val_ndcg@10": report.get("best_val_ndcg@10"),
        "best_epoch": report.get("best_epoch"),
        "epochs": report.get("epochs"),
        "seconds": round(seconds, 1),
        "seconds_per_epoch": round(seconds / max(report.get("epochs") or 1, 1), 2),
        "load_avg": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "curve": [[h["epoch"], round(h["val_ndcg@10"], 4)] for h in history if "val_ndcg@10" in h],
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }


def render(rows: list[dict[str, Any]]) -> str:
    """Markdown table of tuning rows, best validation NDCG@10 first; the config columns are
    the fields that differ between rows."""
    keys = _varying_fields([r["config"] for r in rows])
    head = ["tag", *keys, "val NDCG@10", "val HR@10", "best epoch", "fit s", "load"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in sorted(rows, key=lambda r: -r["val_ndcg@10"]):
        load = "-".join(map(str, r["load_avg"])) if "load_avg" in r else "-"
        cells = [str(r["config"].get(k, "-")) for k in keys]
        hr = f"{r['val_hr@10']:.4f}" if "val_hr@10" in r else "-"
        stats = [f"{r['val_ndcg@10']:.4f}", hr, str(r.get("best_epoch")), str(r.get("seconds"))]
        lines.append("| " + " | ".join([r["tag"], *cells, *stats, load]) + " |")
    return "\n".join(lines)


def _varying_fields(configs: list[dict[str, Any]]) -> list[str]:
    """Config fields (in first-seen order) whose value differs between runs or is missing in
    some, run-only fields left out."""
    names = list(dict.fromkeys(k for c in configs for k in c if k not in RUN_FIELDS))
    return [k for k in names if len({json.dumps(c.get(k)) for c in configs}) > 1]


def read_log(path: Path) -> list[dict[str, Any]]:
    """Every row of a tuning log."""
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def main(argv: Sequence[str] | None = None) -> None:
    """Run the grid (each row appended to the log as it finishes), or render the log."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--set", action="append", default=[], help="field=v1,v2,... (repeat)")
    parser.add_argument("--tag", default="run")
    parser.add_argument("--data", default="ml1m-half-loo")
    parser.add_argument("--catalog", help="item texts for content/hybrid models, e.g. ml-1m")
    parser.add_argument("--content-cache", default="var/content-cache")
    parser.add_argument("--log", type=Path, help="default research/results/tuning_<model>.jsonl")
    parser.add_argument("--render", action="store_true")
    args = parser.parse_args(argv)
    log = args.log or RESULTS / f"tuning_{args.model}.jsonl"
    if args.render:
        print(render(read_log(log)))
        return
    data = load_validation(args.data)
    features = catalog_features(data.item_ids, args.catalog, args.content_cache)
    for overrides in grid(args.set):
        row = run_point(args.model, data, overrides, args.tag, features)
        if args.catalog:
            row["catalog"] = args.catalog
        with log.open("a") as out:
            out.write(json.dumps(row) + "\n")
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
