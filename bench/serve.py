"""Serving load: /recommend (warm and cold cache, per model; warm with a category filter)
against a trivial endpoint.

A real uvicorn server (one worker) on Postgres and Redis serves checkpoints trained on
ml1m-half-loo; a load generator in a separate process (bench/loadgen.py) keeps 16 connections
busy. Run: .venv/bin/python bench/serve.py [--checkpoints DIR] [--seconds 10] [--clients 16]
--checkpoints: a directory of <model>/ checkpoints (recsys compare writes them under
<out>/checkpoints); models missing there are trained here (SASRec with a time budget).
--long-users N adds N users with --long-events events each (views, some purchases and
dislikes; more than the 200-event model input) and a "warm long history" scenario per model:
their whole history is masked, so this is the cost of the seen set (issue 14). --models picks
the models (a smoke test: --models mf --seconds 2 --rounds 1 --long-users 200).
Each round measures every scenario, the trivial one first; the table shows medians over rounds
(--rounds, default 3), and ratios are taken within a round. Writes bench/results/serve.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import redis

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import BENCH_REDIS_URL, ROOT, server, throwaway_postgres, write_result
from models.data import LeaveOneOut, default_data_dir, load_split_dir
from models.train import save_trained, train_model

REDIS_URL = BENCH_REDIS_URL
MODELS = ("mf", "sasrec")
# Only when no trained checkpoint is given: serving speed does not depend on training length.
FALLBACK_OVERRIDES: dict[str, dict[str, Any]] = {
    "sasrec": {
        "max_seconds": float(os.environ.get("RECSYS_BENCH_SASREC_SECONDS", 120)),
        "progress": False,
    }
}


def prepare_models(
    data: LeaveOneOut, source: Path | None, target: Path, models: tuple[str, ...] = MODELS
) -> dict[str, str]:
    """target/<model>/bench: copied from `source` when there, else trained now."""
    origin = {}
    for name in models:
        given = source / name if source else None
        if given is not None and (given / "meta.json").is_file():
            shutil.copytree(given, target / name / "bench")
            meta = json.loads((given / "meta.json").read_text())
            # What the checkpoint is, not where it lies: results hold no machine paths.
            origin[name] = f"--checkpoints, created {meta.get('created_at')}"
            continue
        trained = train_model(name, data, FALLBACK_OVERRIDES.get(name, {}), refit=False)
        save_trained(trained.model, trained.report, data, target / name / "bench")
        origin[name] = "trained by bench/serve.py"
    return origin


EVENT_COLUMNS = ["event_id", "user_id", "item_id", "type", "event_time"]


async def copy_rows(dsn: str, table: str, records: list[Any], columns: list[str]) -> None:
    """COPY rows into a table over one connection."""
    connection = await asyncpg.connect(dsn)
    try:
        await connection.copy_records_to_table(table, records=records, columns=columns)
    finally:
        await connection.close()


async def seed_events(dsn: str, data: LeaveOneOut) -> int:
    """COPY every user's train + val history into the events table."""
    records = []
    for user, history in enumerate(data.train_plus_val()):
        user_id = data.user_ids.ids[user]
        for step, item in enumerate(history.tolist()):
            moment = datetime.fromtimestamp(1_600_000_000 + step, UTC)
            records.append((uuid.uuid4().hex, user_id, data.item_ids.ids[item], "view", moment))
    await copy_rows(dsn, "events", records, EVENT_COLUMNS)
    return len(records)


async def seed_long_histories(
    dsn: str, data: LeaveOneOut, users: int, events: int, seed: int = 0
) -> list[str]:
    """COPY `users` extra users with `events` events each over random items (90% views, 5%
    purchases, 5% dislikes), oldest first; returns their ids."""
    rng = random.Random(seed)
    items, kinds = data.item_ids.ids, ["view"] * 18 + ["purchase", "dislike"]
    ids = [f"long-{n}" for n in range(users)]
    records = [
        (
            uuid.uuid4().hex,
            user,
            rng.choice(items),
            rng.choice(kinds),
            datetime.fromtimestamp(1_600_000_000 + step, UTC),
        )
        for user in ids
        for step in range(events)
    ]
    await copy_rows(dsn, "events", records, EVENT_COLUMNS)
    return ids


# The filtered scenario's catalog: item n is in category cat-(n % CATEGORIES), so one category
# holds a tenth of the items and a user's cached top-100 rarely holds 10 of them (the catalog
# restricted to the category is scored, as a shop's category page would be).
CATEGORIES = 10


async def seed_items(dsn: str, data: LeaveOneOut) -> int:
    """COPY a catalog row per item, each in one of CATEGORIES categories."""
    records = [
        (item_id, json.dumps([f"cat-{n % CATEGORIES}"]), "{}", float(n % 100), True)
        for n, item_id in enumerate(data.item_ids.ids)
    ]
    await copy_rows(
        dsn, "items", records, ["item_id", "categories", "attributes", "price", "active"]
    )
    return len(records)


def load(
    base: str, paths: list[str], args: argparse.Namespace, *, once: bool = False
) -> dict[str, Any]:
    """Run the load generator in its own process over `paths`."""
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
        f.write("\n".join(paths))
    command = [
        sys.executable,
        str(ROOT / "bench" / "loadgen.py"),
        base,
        f.name,
        "--clients",
        str(args.clients),
        "--seconds",
        str(args.seconds),
    ]
    done = subprocess.run(
        command + (["--once"] if once else []), capture_output=True, text=True, check=True
    )
    Path(f.name).unlink()
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def flush_prefix(prefix: str) -> None:
    """Drop every cached key of this run: the next requests are cold."""
    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(match=f"{prefix}*", count=10_000))
    for start in range(0, len(keys), 10_000):
        client.delete(*keys[start : start + 10_000])


def scenarios(
    base: str,
    users: list[str],
    prefix: str,
    args: argparse.Namespace,
    long_users: list[str] | None = None,
) -> dict[str, Any]:
    """Trivial endpoint; per model: cold (each user at most once, empty cache), then warm
    (a warm-up pass over `--warm-users` users, then a timed run cycling over them), and warm
    over the long-history users when there are any."""
    results = {"trivial /healthz": load(base, ["/healthz"], args)}
    warm_args = argparse.Namespace(**{**vars(args), "seconds": 600})
    for name in args.models:
        paths = [f"/recommend?user_id={u}&k=10&model={name}" for u in users]
        flush_prefix(prefix)
        results[f"{name} cold"] = load(base, paths, args, once=True)
        warm = paths[-args.warm_users :]  # the cold run starts at the front
        load(base, warm, warm_args, once=True)
        results[f"{name} warm"] = load(base, warm, args)
        results[f"{name} warm category"] = load(base, [f"{p}&category=cat-3" for p in warm], args)
        if long_users:
            paths = [f"/recommend?user_id={u}&k=10&model={name}" for u in long_users]
            load(base, paths, warm_args, once=True)  # warm-up: every state cached
            results[f"{name} warm long history"] = load(base, paths, args)
    trivial = results["trivial /healthz"]["rps"]
    for result in results.values():
        result["rps_vs_trivial"] = result["rps"] / trivial  # within the round: same conditions
    return results


def medians(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Per scenario, the median over rounds of every number (the machine is noisy)."""
    keys = ("rps", "rps_vs_trivial", "p50_ms", "p95_ms", "p99_ms", "errors")
    return {
        name: {key: statistics.median(r[name][key] for r in rounds) for key in keys}
        for name in rounds[0]
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Set everything up, measure, return the results."""
    data = load_split_dir(Path(args.data))
    prefix = f"recsys-bench-{uuid.uuid4().hex[:8]}:"
    with tempfile.TemporaryDirectory() as tmp, throwaway_postgres() as dsn:
        origin = prepare_models(
            data, Path(args.checkpoints) if args.checkpoints else None, Path(tmp), args.models
        )
        events = asyncio.run(seed_events(dsn, data))
        asyncio.run(seed_items(dsn, data))
        long_users = (
            asyncio.run(seed_long_histories(dsn, data, args.long_users, args.long_events))
            if args.long_users
            else []
        )
        env = {
            "RECSYS_DATABASE_URL": dsn.replace("postgresql://", "postgresql+asyncpg://", 1),
            "RECSYS_REDIS_URL": REDIS_URL,
            "RECSYS_REDIS_PREFIX": prefix,
            "RECSYS_MODEL_DIR": tmp,
            "RECSYS_LOG_LEVEL": "WARNING",
        }
        try:
            with server(env) as base:
                rounds = [
                    scenarios(base, data.user_ids.ids, prefix, args, long_users)
                    for _ in range(args.rounds)
                ]
        finally:
            flush_prefix(prefix)
    return {
        "clients": args.clients,
        "seconds": args.seconds,
        "workers": 1,
        "events": events,
        "users": len(data.user_ids),
        "long_history_users": {"users": args.long_users, "events_each": args.long_events},
        "checkpoints": origin,
        "rounds": rounds,
        "results": medians(rounds),
    }


def main() -> None:
    """Parse arguments, run, print the table, write JSON."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", default=str(default_data_dir() / "ml1m-half-loo"))
    parser.add_argument("--checkpoints", default=None)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--warm-users", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3, help="medians over rounds are reported")
    parser.add_argument("--long-users", type=int, default=1000, help="0: no long histories")
    parser.add_argument("--long-events", type=int, default=300)
    parser.add_argument(
        "--models", type=lambda v: tuple(v.split(",")), default=MODELS, help="e.g. mf,sasrec"
    )
    outcome = run(parser.parse_args())
    print(f"\nmedians over {len(outcome['rounds'])} rounds")
    print("| scenario | requests/s | vs trivial | p50 ms | p95 ms | p99 ms | errors |")
    print("|---|---|---|---|---|---|---|")
    for name, r in outcome["results"].items():
        print(
            f"| {name} | {r['rps']:,.0f} | {r['rps_vs_trivial']:.2f} | {r['p50_ms']:.1f} | "
            f"{r['p95_ms']:.1f} | {r['p99_ms']:.1f} | {r['errors']} |"
        )
    print(f"wrote {write_result('serve', outcome)}")


if __name__ == "__main__":
    main()
