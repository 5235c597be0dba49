"""Grid search of iALS hyperparameters on ml1m-half-loo VALIDATION (test is never looked at).

Usage: nice python bench/tune_mf.py --grid factors=64 unobserved_weight=0.01,0.1 ... --tag NAME
Each run appends one JSON line to bench/results/tuning_mf.jsonl; `--render` prints a Markdown
table of every run recorded so far (pasted into bench/results/tuning_mf.md).
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from pathlib import Path

from models.split import load_dataset
from models.zoo import build_model

RESULTS = Path(__file__).parent / "results"
KEYS = (
    "factors",
    "unobserved_weight",
    "regularization",
    "reg_exponent",
    "recency_boost",
    "recency_halflife",
    "iterations",
)


def run_grid(grid: dict[str, list[str]], tag: str, data_path: str) -> None:
    """Fit one model per grid point, validation only, and append the results."""
    data = load_dataset(data_path)
    valid = data.val_set()
    names = list(grid)
    for values in itertools.product(*(grid[n] for n in names)):
        overrides = dict(zip(names, values, strict=True))
        model = build_model("mf", data.num_items, overrides)
        start = time.perf_counter()
        report = model.fit(data.train, valid)
        row = {
            "tag": tag,
            "config": model.config_dict(),
            "val_ndcg@10": report["best_val_ndcg@10"],
            "best_epoch": report["best_epoch"],
            "epochs": report["epochs"],
            "seconds": round(time.perf_counter() - start, 2),
            "curve": [round(h["val_ndcg@10"], 4) for h in report["history"]],
        }
        print(json.dumps(row), flush=True)
        with open(RESULTS / "tuning_mf.jsonl", "a") as f:
            f.write(json.dumps(row) + "\n")


def render() -> None:
    """Markdown table of every recorded run, best validation NDCG@10 first."""
    rows = [json.loads(line) for line in (RESULTS / "tuning_mf.jsonl").read_text().splitlines()]
    rows.sort(key=lambda r: -r["val_ndcg@10"])
    lines = [
        "| tag | " + " | ".join(KEYS) + " | val NDCG@10 | best epoch | fit s |",
        "|" + "---|" * (len(KEYS) + 4),
    ]
    for r in rows:
        cells = [str(r["config"].get(k, 0.0)) for k in KEYS]  # early runs predate recency
        lines.append(
            f"| {r['tag']} | "
            + " | ".join(cells)
            + f" | {r['val_ndcg@10']:.4f} | {r['best_epoch']} | {r['seconds']} |"
        )
    print("\n".join(lines))


def main() -> None:
    """Parse the grid and run it, or render the table."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--grid", nargs="*", default=[], help="name=v1,v2 ...")
    parser.add_argument("--tag", default="grid")
    parser.add_argument("--data", default="ml1m-half-loo")
    parser.add_argument("--render", action="store_true")
    args = parser.parse_args()
    if args.render:
        render()
        return
    grid = {k: v.split(",") for k, v in (item.split("=", 1) for item in args.grid)}
    run_grid(grid, args.tag, args.data)


if __name__ == "__main__":
    main()
