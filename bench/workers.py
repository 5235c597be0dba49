"""Warm /recommend throughput and latency with 1 and with 2 worker processes (`recsys serve
--workers N`, Redis shared by the workers).

Same setup as bench/promotion.py (a model trained on a generated shop, Postgres, Redis). Per
round and worker count: a fresh server and Redis prefix, one pass over `--warm-users` users
(every state cached), then 16 connections for `--seconds` over the same users. Rounds alternate
1, 2, 1, 2 ...; the table shows medians over rounds and the median ratio of 2 workers to 1
within a round (the machine is shared, so only same-round ratios compare).
Run: .venv/bin/python bench/workers.py [--rounds 2] [--seconds 15]. Writes
bench/results/workers.json.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import server, service_env, throwaway_postgres, write_result
from bench.promotion import prepare, seed
from bench.serve import flush_prefix, load

KEYS = ("rps", "p50_ms", "p95_ms", "p99_ms", "errors")


def warm_paths(users: np.ndarray, count: int, model: str) -> list[str]:
    """/recommend paths for `count` users of the shop (a fixed, seeded choice)."""
    chosen = np.random.default_rng(0).choice(users, size=min(count, len(users)), replace=False)
    return [f"/recommend?user_id={u}&k=10&model={model}" for u in chosen]


def measure(env: dict[str, str], workers: int, paths: list[str], args: argparse.Namespace) -> Any:
    """One server with `workers` processes: a warm-up pass, then the timed warm load."""
    prefix = f"recsys-bench-{uuid.uuid4().hex[:8]}:"
    try:
        with server({**env, "RECSYS_REDIS_PREFIX": prefix}, workers=workers) as base:
            warm_up = argparse.Namespace(clients=args.clients, seconds=600)
            load(base, paths, warm_up, once=True)
            return load(base, paths, argparse.Namespace(clients=args.clients, seconds=args.seconds))
    finally:
        flush_prefix(prefix)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Set up once, then alternate 1 and 2 workers for each round."""
    with tempfile.TemporaryDirectory() as tmp_dir, throwaway_postgres() as dsn:
        tmp = Path(tmp_dir)
        data, _ = prepare(args, tmp)
        asyncio.run(seed(dsn, data))
        paths = warm_paths(np.unique(data.user_ids), args.warm_users, args.model)
        env = service_env(dsn, tmp / "models")
        rounds = [
            {str(n): measure(env, n, paths, args) for n in (1, 2)} for _ in range(args.rounds)
        ]
    medians = {
        n: {key: statistics.median(r[n][key] for r in rounds) for key in KEYS} for n in ("1", "2")
    }
    ratio = statistics.median(r["2"]["rps"] / r["1"]["rps"] for r in rounds)
    return {
        "model": args.model,
        "shop": {"items": args.items, "users": args.users, "events": args.events},
        "clients": args.clients,
        "seconds": args.seconds,
        "warm_users": len(paths),
        "cpus": os.cpu_count(),
        "rounds": rounds,
        "results": medians,
        "rps_ratio_2_vs_1": ratio,
        "load_average_at_end": os.getloadavg(),
    }


def main() -> None:
    """Parse arguments, run, print the table, write JSON."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="mf", choices=("mf", "sasrec"))
    parser.add_argument("--items", type=int, default=5_000)
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--events", type=int, default=300_000)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--warm-users", type=int, default=2_000)
    parser.add_argument("--rounds", type=int, default=2)
    outcome = run(parser.parse_args())
    print(f"\nwarm /recommend, {outcome['model']}, {outcome['clients']} connections")
    print(f"medians over {len(outcome['rounds'])} rounds, {outcome['cpus']} CPUs")
    print("| workers | requests/s | p50 ms | p95 ms | p99 ms | errors |")
    print("|---|---|---|---|---|---|")
    for n, r in outcome["results"].items():
        print(
            f"| {n} | {r['rps']:,.0f} | {r['p50_ms']:.1f} | {r['p95_ms']:.1f} | "
            f"{r['p99_ms']:.1f} | {r['errors']} |"
        )
    print(
        f"2 workers / 1 worker, requests/s (median of same-round ratios): "
        f"{outcome['rps_ratio_2_vs_1']:.2f}"
    )
    print(f"wrote {write_result('workers', outcome)}")


if __name__ == "__main__":
    main()
