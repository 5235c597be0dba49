"""Run many protocol checks (research/protocol_check.py) in parallel: validation data only.

Each config is fit on the shifted split (early stopping on the last train item) and scored,
with and without the refit, on the real validation items; a split directory's test file is
never opened. Runs go to separate processes (`--jobs`), one torch thread each, so a GPU
machine with many cores (`--set device=cuda`) or a many-core CPU runs a grid in one go;
`--jobs 1` runs them one after the other in this process.
Results are appended to a JSON-lines file as each run ends, so a killed sweep keeps its rows.

Usage: python -m research.sweep --model sasrec --grid grid.json --jobs 8 --out runs.jsonl
grid.json: [{"name": "base"}, {"name": "wide", "set": {"hidden": 128}, "seed": 1}, ...]
`--set field=value` applies to every run, under each run's own settings.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from models.base import torch_threads
from models.zoo import parse_overrides
from research.protocol_check import check

Task = tuple[str, str, dict[str, Any], dict[str, Any]]  # model, data, common set, grid entry


def run_entry(task: Task) -> dict[str, Any]:
    """One grid entry, one torch thread; failures come back as rows, not exceptions."""
    model, data, common, entry = task
    overrides = {**common, **entry.get("set", {})}
    start = time.perf_counter()
    try:
        with torch_threads(1):
            row = check(model, data, overrides, int(entry.get("seed", 0)))
    except Exception as error:  # a bad config must not sink the rest of the grid
        row = {"model": model, "overrides": overrides, "error": repr(error)}
    return {
        "name": entry.get("name", ""),
        "wall_seconds": round(time.perf_counter() - start, 1),
        **row,
    }


def run_grid(tasks: list[Task], jobs: int) -> Iterator[dict[str, Any]]:
    """Each task's row as it finishes: in worker processes, or here when `jobs` is 1."""
    if jobs <= 1:
        yield from map(run_entry, tasks)
        return
    # spawn: CUDA cannot be used from forked children.
    with mp.get_context("spawn").Pool(jobs, maxtasksperchild=1) as pool:
        yield from pool.imap_unordered(run_entry, tasks)


def table(rows: list[dict[str, Any]]) -> str:
    """Markdown table of finished runs, best refit NDCG@10 first."""
    lines = [
        "| run | refit NDCG@10 | refit HR@10 | no-refit NDCG@10 | best epoch | fit s | refit s |",
        "|---|---|---|---|---|---|---|",
    ]
    done = [r for r in rows if "refit" in r]
    for r in sorted(done, key=lambda r: -r["refit"]["ndcg@10"]):
        lines.append(
            f"| {r['name']} | {r['refit']['ndcg@10']:.4f} | {r['refit']['hr@10']:.4f} "
            f"| {r['no_refit']['ndcg@10']:.4f} | {r['best_epoch']} | {r['fit_seconds']} "
            f"| {r['refit_seconds']} |"
        )
    lines += [f"| {r['name']} | failed: {r['error']} | | | | | |" for r in rows if "error" in r]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    """Run the grid, appending each row to --out, and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="sasrec")
    parser.add_argument("--data", default="ml1m-half-loo")
    parser.add_argument("--grid", type=Path, required=True, help="JSON list of runs")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--out", type=Path, required=True, help="JSON-lines output")
    parser.add_argument("--set", action="append", default=[], help="field=value for all runs")
    args = parser.parse_args(argv)
    common = parse_overrides(args.set)
    tasks = [(args.model, args.data, common, entry) for entry in json.loads(args.grid.read_text())]
    rows = []
    for row in run_grid(tasks, args.jobs):
        rows.append(row)
        with args.out.open("a") as out:
            out.write(json.dumps(row) + "\n")
        print(f"done {row['name']}: {row.get('refit', row.get('error'))}", flush=True)
    print(table(rows))


if __name__ == "__main__":
    main()
