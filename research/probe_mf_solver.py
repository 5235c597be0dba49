"""Probe: iALS's exact row solves against conjugate-gradient steps on a synthetic shop, on
VALIDATION (each user's latest item held out; no test split is read).

Usage: nice python -m research.probe_mf_solver var/scale/S/events.csv --solvers exact,cg
Fits mf once per solver on the same leave-one-out split (k-core 2: a user needs a history and
a held-out item) and appends one JSON line per run (fit seconds, epochs, validation NDCG@10 and
HR@10 on a seeded sample of users, peak RSS) to research/results/probe_mf_solver.jsonl.
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path
from typing import Any

from models.data import load_interactions
from models.metrics import evaluate
from models.split import build_leave_one_out
from models.zoo import build_model, parse_overrides
from research.common import RESULTS


def run(
    events: Path, solvers: list[str], eval_users: int, overrides: dict[str, str]
) -> list[dict[str, Any]]:
    """Split once, fit mf once per solver; one result row per solver."""
    started = time.perf_counter()
    data = build_leave_one_out(load_interactions(events), k=2)
    split_seconds = time.perf_counter() - started
    valid = data.val_set(eval_users)
    rows = []
    for solver in solvers:
        config = {**overrides, "solver": solver}
        model = build_model("mf", data.num_items, config)
        fit_start = time.perf_counter()
        report = model.fit(data.train, valid)
        fit_seconds = time.perf_counter() - fit_start
        metrics = evaluate(model, valid, ks=(10,))
        rows.append(
            {
                "events": str(events),
                "users": data.num_users,
                "items": data.num_items,
                "solver": solver,
                "overrides": config,
                "split_seconds": round(split_seconds, 1),
                "fit_seconds": round(fit_seconds, 1),
                "epochs": report["epochs"],
                "best_epoch": report["best_epoch"],
                "val_users": len(valid),
                "val_ndcg@10": round(metrics["ndcg@10"], 4),
                "val_hr@10": round(metrics["hr@10"], 4),
                "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
                "date": time.strftime("%Y-%m-%d %H:%M"),
            }
        )
    return rows


def main() -> None:
    """Parse arguments, run, append the results."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("events", type=Path)
    parser.add_argument("--solvers", default="exact,cg")
    parser.add_argument("--eval-users", type=int, default=20_000)
    parser.add_argument("--set", action="append", default=[], help="mf config key=value")
    args = parser.parse_args()
    overrides = parse_overrides(args.set)
    for row in run(args.events, args.solvers.split(","), args.eval_users, overrides):
        print(json.dumps(row), flush=True)
        with (RESULTS / "probe_mf_solver.jsonl").open("a") as f:
            f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
