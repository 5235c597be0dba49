"""Choose the test protocol of a model (refit on train+val, or not) without touching test.

The split is shifted one step back (`models.split.shift_back`): each user's last train item
becomes the validation target and the real validation item the "test" target, so the real test
items are never read. On that split `models.train.train_model` fits with early stopping on the
shifted validation and refits; both protocols are scored on the shifted test (= real val):
  - no refit: `Trained.fitted`, the early-stopped model, input train + shifted val;
  - refit: `Trained.model`, what the refit protocol serves (SASRec: joined with the fit).

Usage: nice python -m research.protocol_check --model sasrec [--set field=value ...] [--tag T]
Writes research/results/protocol_<model>[_<tag>].json and prints a table.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from models.data import LeaveOneOut
from models.metrics import evaluate
from models.split import shift_back
from models.train import train_model
from models.zoo import parse_overrides
from research.common import RESULTS, load_validation, rounded

HEADLINE = ("ndcg@10", "hr@10", "ndcg@20", "hr@20")


def load_shifted(data_path: str | Path) -> LeaveOneOut:
    """The shifted split of a dataset's train and val."""
    return shift_back(load_validation(data_path))


def check(name: str, data_path: str | Path, overrides: dict[str, Any], seed: int) -> dict[str, Any]:
    """Fit and refit on the shifted split; score both protocols on its test (= real val)."""
    data = load_shifted(data_path)
    trained = train_model(name, data, overrides, seed=seed, refit=True)
    report = trained.report
    no_refit = evaluate(trained.fitted, data.test_set(), item_popularity=data.item_popularity())
    return {
        "model": name,
        "overrides": overrides,
        "seed": seed,
        "best_epoch": report.fit.get("best_epoch"),
        "shifted_val": rounded(report.val, HEADLINE),
        "no_refit": rounded(no_refit, HEADLINE),
        "refit": rounded(report.test, HEADLINE),
        "fit_seconds": round(report.train_seconds, 1),
        "refit_seconds": round(report.refit_seconds or 0.0, 1),
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }


def table(row: dict[str, Any]) -> str:
    """The two protocols' NDCG@10 and HR@10 as a Markdown table."""
    lines = ["| protocol | ndcg@10 | hr@10 |", "|---|---|---|"]
    for key in ("no_refit", "refit"):
        lines.append(f"| {key} | {row[key]['ndcg@10']:.4f} | {row[key]['hr@10']:.4f} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    """Run the check for one model and write its JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="sasrec")
    parser.add_argument("--data", default="ml1m-half-loo")
    parser.add_argument("--set", action="append", default=[], help="config field=value")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tag", default="", help="suffix of the result file's name")
    parser.add_argument("--results", type=Path, default=RESULTS, help="directory to write to")
    args = parser.parse_args(argv)
    row = check(args.model, args.data, parse_overrides(args.set), args.seed)
    args.results.mkdir(parents=True, exist_ok=True)
    stem = f"protocol_{args.model}" + (f"_{args.tag}" if args.tag else "")
    (args.results / f"{stem}.json").write_text(json.dumps(row, indent=2) + "\n")
    print(table(row))
    print(json.dumps(row))


if __name__ == "__main__":
    main()
