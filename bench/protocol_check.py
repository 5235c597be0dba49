"""Choose the test protocol of a model (refit on train+val, or not) without touching test.

The split is shifted one step back: each user's last train item becomes the validation target
and the real validation item becomes the "test" target, so the real test items are never read.
On that shifted split the model is fit with early stopping, then both protocols are scored on
the shifted test (= real validation):
  - no refit: the early-stopped model, input train + shifted val;
  - refit: a fresh model fit on train + shifted val for the best epoch count, same input.

Usage: python -m bench.protocol_check --model sasrec [--set field=value ...]
Writes bench/results/protocol_<model>.json and prints a table.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from models.data import LeaveOneOut, is_split_dir, load_train_val, resolve_data_path
from models.metrics import evaluate
from models.split import load_dataset
from models.train import refit_model, seed_everything
from models.zoo import build_model

RESULTS = Path(__file__).parent / "results"


def shifted(data: LeaveOneOut) -> LeaveOneOut:
    """The split moved one step back: last train item -> val, val -> test; test dropped."""
    keep = np.array([len(h) >= 2 for h in data.train])
    if not keep.all():  # users with a single train item cannot give up one
        raise ValueError(f"{int((~keep).sum())} users have fewer than 2 train items")
    return LeaveOneOut(
        user_ids=data.user_ids,
        item_ids=data.item_ids,
        train=[h[:-1] for h in data.train],
        val=np.array([h[-1] for h in data.train], dtype=np.int64),
        test=data.val.copy(),
        meta={**data.meta, "shifted": True},
        train_times=None if data.train_times is None else [t[:-1] for t in data.train_times],
        val_times=None if data.train_times is None else np.array([t[-1] for t in data.train_times]),
        test_times=data.val_times,
    )


def load_shifted(data_path: str) -> LeaveOneOut:
    """The shifted split of a dataset; a split directory's test file is not even opened."""
    resolved = resolve_data_path(data_path)
    return shifted(load_train_val(resolved) if is_split_dir(resolved) else load_dataset(resolved))


def _scores(metrics: dict[str, float]) -> dict[str, float]:
    """The headline metrics, rounded."""
    return {k: round(metrics[k], 4) for k in ("ndcg@10", "hr@10", "ndcg@20", "hr@20")}


def check(name: str, data_path: str, overrides: dict[str, Any], seed: int) -> dict[str, Any]:
    """Fit on the shifted split and score both protocols on its test (= real validation)."""
    data = load_shifted(data_path)
    popularity = data.item_popularity()
    seed_everything(seed)
    model = build_model(name, data.num_items, overrides)
    start = time.perf_counter()
    report = model.fit(data.train, data.val_set())
    fit_seconds = time.perf_counter() - start
    no_refit = evaluate(model, data.test_set(), item_popularity=popularity)
    refit, timed = refit_model(name, data, model, report, seed)
    with_refit = evaluate(refit, data.test_set(), item_popularity=popularity)
    return {
        "model": name,
        "overrides": overrides,
        "seed": seed,
        "best_epoch": report.get("best_epoch"),
        "shifted_val": _scores(evaluate(model, data.val_set(), item_popularity=popularity)),
        "no_refit": _scores(no_refit),
        "refit": _scores(with_refit),
        "fit_seconds": round(fit_seconds, 1),
        "refit_seconds": round(timed.seconds, 1),
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }


def main() -> None:
    """Run the check for one model and write its JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="sasrec")
    parser.add_argument("--data", default="ml1m-half-loo")
    parser.add_argument("--set", action="append", default=[], help="config field=value")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    overrides = dict(item.split("=", 1) for item in args.set)
    row = check(args.model, args.data, overrides, args.seed)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"protocol_{args.model}.json").write_text(json.dumps(row, indent=2) + "\n")
    print("| protocol | ndcg@10 | hr@10 |\n|---|---|---|")
    for key in ("no_refit", "refit"):
        print(f"| {key} | {row[key]['ndcg@10']:.4f} | {row[key]['hr@10']:.4f} |")
    print(json.dumps(row))


if __name__ == "__main__":
    main()
