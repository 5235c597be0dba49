"""Tune SASRec on ml1m-half-loo VALIDATION; test is computed only with --test (the chosen config).

Usage:
  nice python -m bench.tune_sasrec --tag lr3e-3 --set lr=0.003 --set cosine=true [--test]
  python -m bench.tune_sasrec --render
Each run appends one JSON line (config, best validation metrics, epoch times, the validation
curve, the machine load while it ran) to bench/results/tuning_sasrec.jsonl; --render prints the
markdown table of every run, best validation NDCG@10 first.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

from models.metrics import evaluate
from models.split import load_dataset
from models.zoo import build_model

RESULTS = Path(__file__).parent / "results"
LOG = RESULTS / "tuning_sasrec.jsonl"
KEYS = ("max_len", "hidden", "blocks", "dropout", "lr", "batch_size", "epochs", "mask_history")


def run(overrides: dict[str, str], tag: str, data_path: str, test: bool) -> dict[str, Any]:
    """Fit one model with early stopping on validation and record it."""
    data = load_dataset(data_path)
    model = build_model("sasrec", data.num_items, overrides)
    load_before = os.getloadavg()[0]
    report = model.fit(data.train, data.val_set())
    history = report["history"]
    row: dict[str, Any] = {
        "tag": tag,
        "config": model.config_dict(),
        "val_ndcg@10": round(report["best"]["val_ndcg@10"], 4),
        "val_hr@10": round(report["best"]["val_hr@10"], 4),
        "best_epoch": report["best_epoch"],
        "epochs": report["epochs"],
        "seconds_to_best": round(report["seconds_to_best"], 1),
        "seconds": round(report["seconds"], 1),
        "seconds_per_epoch": round(history[-1]["seconds"] / len(history), 2),
        "load_avg": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "curve": [
            (h["epoch"], round(h["val_ndcg@10"], 4), round(h["seconds"]))
            for h in history
            if "val_ndcg@10" in h
        ],
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }
    if test:
        metrics = evaluate(model, data.test_set(), item_popularity=data.item_popularity())
        row["test"] = {k: round(v, 4) for k, v in metrics.items()}
    with LOG.open("a") as f:
        f.write(json.dumps(row) + "\n")
    return row


def render() -> str:
    """Markdown table of every recorded run, best validation NDCG@10 first."""
    rows = [json.loads(line) for line in LOG.read_text().splitlines() if line.strip()]
    rows.sort(key=lambda r: -r["val_ndcg@10"])
    lines = [
        "| tag | " + " | ".join(KEYS) + " | val NDCG@10 | val HR@10 | best ep | s/epoch "
        "| s to best | load |",
        "|" + "---|" * (len(KEYS) + 7),
    ]
    for r in rows:
        cells = [str(r["config"].get(k)) for k in KEYS]
        lines.append(
            f"| {r['tag']} | " + " | ".join(cells) + f" | {r['val_ndcg@10']:.4f} "
            f"| {r['val_hr@10']:.4f} | {r['best_epoch']} | {r['seconds_per_epoch']} "
            f"| {r['seconds_to_best']} | {r['load_avg'][0]}-{r['load_avg'][1]} |"
        )
    return "\n".join(lines)


def main() -> None:
    """Run one config, or render the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--set", action="append", default=[], help="config field=value")
    parser.add_argument("--tag", default="run")
    parser.add_argument("--data", default="ml1m-half-loo")
    parser.add_argument("--test", action="store_true", help="also report test (final config only)")
    parser.add_argument("--render", action="store_true")
    args = parser.parse_args()
    if args.render:
        print(render())
        return
    overrides = dict(item.split("=", 1) for item in args.set)
    print(json.dumps(run(overrides, args.tag, args.data, args.test)))


if __name__ == "__main__":
    main()
