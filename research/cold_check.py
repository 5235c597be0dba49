"""Cold-item quality on VALIDATION only: the cold-item split of the split shifted one step back.

`models.split.shift_back` moves each user's last train item to validation and the real
validation item to "test", so the real test items are never read; `models.split.cold_item_split`
then makes 10% of the items cold (out of train and shifted val). The model is fit with early
stopping on the shifted validation (no refit) and scored on the real validation items: the users
whose item is cold (the cold slice) and the others (the warm slice). This is how the hybrids'
"add" and "init" were compared on cold items without reading test.

`--cold-scales 0.5,1,2` also scores the fitted hybrid as if its `cold_scale` were each of these:
an untrained item's vector is cold_scale x its content part and nothing else depends on it (no
softmax or unobserved-term weight, never in a history here), so one fit serves every value.

Usage: nice python -m research.cold_check --model sasrec-hybrid --catalog ml-1m
  [--set field=value ...] [--cold-scales 0.5,1,2] [--tag T]
Appends one JSON line per run to research/results/cold_check.jsonl and prints it.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from models.base import Recommender
from models.compare import slice_metrics
from models.data import EvalSet, LeaveOneOut
from models.metrics import evaluate_vectors
from models.split import cold_item_split, cold_test_users, shift_back
from models.train import train_model
from models.zoo import parse_overrides
from research.common import RESULTS, catalog_features, load_validation, rounded

HEADLINE = ("ndcg@10", "hr@10")


def check(
    name: str,
    data_path: str | Path,
    catalog: str | None,
    overrides: dict[str, Any],
    fraction: float = 0.1,
    cache: str | Path = "var/content-cache",
    scales: Sequence[float] = (),
) -> dict[str, Any]:
    """Fit on the cold split of the shifted split; score its cold and warm "test" (= real val)."""
    data, cold = cold_item_split(shift_back(load_validation(data_path)), fraction=fraction)
    features = catalog_features(data.item_ids, catalog, cache)
    trained = train_model(name, data, overrides, refit=False, item_features=features)
    cold_metrics, warm_metrics = slice_metrics(trained.model, data, cold)
    fitted_scale = float(trained.report.config.get("cold_scale", 1.0))
    return {
        "model": name,
        "overrides": overrides,
        "catalog": catalog,
        "cold_items": len(cold),
        "cold_users": int(cold_test_users(data, cold).sum()),
        "shifted_val": rounded(trained.report.val, HEADLINE),
        "val_cold": rounded(cold_metrics, HEADLINE),
        "val_warm": rounded(warm_metrics, HEADLINE),
        "val_all": rounded(trained.report.test, HEADLINE),
        "best_epoch": trained.report.fit.get("best_epoch"),
        "fit_seconds": round(trained.report.train_seconds, 1),
        "cold_scales": {
            str(s): rescaled(trained.model, data, cold, s / fitted_scale) for s in scales
        },
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }


def rescaled(
    model: Recommender, data: LeaveOneOut, cold: np.ndarray, factor: float
) -> dict[str, dict[str, float]]:
    """Cold, warm and all "test" metrics with the cold items' vectors multiplied by `factor`."""
    test = data.test_set()
    users = model.user_vectors(test.histories, test.times)  # (U, D)
    items = model.item_vectors().clone()
    items[torch.from_numpy(cold)] *= factor
    popularity = data.item_popularity()
    in_cold = cold_test_users(data, cold)
    out = {}
    for key, rows in (("cold", in_cold), ("warm", ~in_cold), ("all", np.ones_like(in_cold))):
        picked = np.flatnonzero(rows)
        part = EvalSet([test.histories[r] for r in picked], test.targets[picked])
        metrics = evaluate_vectors(users[picked], items, part, item_popularity=popularity)
        out[key] = rounded(metrics, HEADLINE)
    return out


def main(argv: Sequence[str] | None = None) -> None:
    """Run the check for one model and append its row."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--data", default="ml1m-half-loo")
    parser.add_argument("--catalog", help="item texts for content/hybrid models, e.g. ml-1m")
    parser.add_argument("--content-cache", default="var/content-cache")
    parser.add_argument("--set", action="append", default=[], help="config field=value")
    parser.add_argument("--tag", default="run")
    parser.add_argument("--fraction", type=float, default=0.1)
    parser.add_argument("--cold-scales", default="", help="e.g. 0.5,1,2 (hybrids)")
    parser.add_argument("--log", type=Path, default=RESULTS / "cold_check.jsonl")
    args = parser.parse_args(argv)
    overrides = parse_overrides(args.set)
    scales = [float(v) for v in args.cold_scales.split(",") if v]
    result = check(
        args.model, args.data, args.catalog, overrides, args.fraction, args.content_cache, scales
    )
    row = {"tag": args.tag, **result}
    with args.log.open("a") as out:
        out.write(json.dumps(row) + "\n")
    print(json.dumps(row))


if __name__ == "__main__":
    main()
