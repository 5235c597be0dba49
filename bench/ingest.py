"""Ingestion throughput: POST /events on a real uvicorn server vs a raw COPY into the same table.

The server runs as deployed: Postgres for events, Redis for the cache (each batch drops the
users' cached vectors and extends their cached histories).

Run: .venv/bin/python bench/ingest.py [--events 100000] [--clients 4] [--rounds 3]
Writes bench/results/ingest.json and prints a table.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import median, server, throwaway_postgres, write_result

COLUMNS = ["event_id", "user_id", "item_id", "type", "value", "event_time", "recommendation_id"]
TYPES = ["view", "click", "add_to_cart", "purchase", "rating"]


def make_events(count: int, seed: int) -> list[dict[str, Any]]:
    """Synthetic shop events: 5,000 users, 20,000 items, spread over 30 days."""
    start = datetime(2026, 10, 1, tzinfo=UTC)
    return [
        {
            "event_id": f"{seed}-{n}-{uuid.uuid4().hex[:8]}",
            "user_id": f"user-{(n * 7919) % 5000}",
            "item_id": f"sku-{(n * 104729) % 20000}",
            "type": TYPES[n % 5],
            "value": float(n % 5 + 1) if n % 5 == 4 else None,
            "timestamp": (start + timedelta(seconds=n * 13 % 2_592_000)).isoformat(),
        }
        for n in range(count)
    ]


def batches(events: list[dict[str, Any]], size: int) -> list[list[dict[str, Any]]]:
    """Consecutive batches of `size`."""
    return [events[i : i + size] for i in range(0, len(events), size)]


async def drain(queue: asyncio.Queue[Any], worker: Any, clients: int) -> float:
    """Run `clients` workers over the queue; seconds until it is empty."""
    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(clients)))
    return time.perf_counter() - started


async def http_round(base: str, bodies: list[bytes], clients: int) -> float:
    """Seconds to POST every body with `clients` concurrent connections."""
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for body in bodies:
        queue.put_nowait(body)
    limits = httpx.Limits(max_connections=clients)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=60) as client:

        async def worker() -> None:
            while not queue.empty():
                response = await client.post(
                    "/events",
                    content=queue.get_nowait(),
                    headers={"content-type": "application/json"},
                )
                response.raise_for_status()

        return await drain(queue, worker, clients)


def copy_records(batch: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """Rows for COPY, converted the way the service would store them."""
    return [
        (
            e["event_id"],
            e["user_id"],
            e["item_id"],
            e["type"],
            e["value"],
            datetime.fromisoformat(e["timestamp"]),
            None,
        )
        for e in batch
    ]


async def raw_round(dsn: str, record_batches: list[list[tuple[Any, ...]]], clients: int) -> float:
    """Seconds to COPY every batch (one transaction each) over `clients` connections."""
    queue: asyncio.Queue[list[tuple[Any, ...]]] = asyncio.Queue()
    for batch in record_batches:
        queue.put_nowait(batch)
    pool = await asyncpg.create_pool(dsn, min_size=clients, max_size=clients)

    async def worker() -> None:
        async with pool.acquire() as connection:
            while not queue.empty():
                await connection.copy_records_to_table(
                    "events", records=queue.get_nowait(), columns=COLUMNS
                )

    try:
        return await drain(queue, worker, clients)
    finally:
        await pool.close()


async def count_and_truncate(dsn: str) -> int:
    """Stored events, then empty the table for the next round."""
    connection = await asyncpg.connect(dsn)
    try:
        count = int(await connection.fetchval("SELECT count(*) FROM events"))
        await connection.execute("TRUNCATE events RESTART IDENTITY")
        return count
    finally:
        await connection.close()


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Alternate HTTP and raw rounds on one database; medians of each."""
    http_rates, raw_rates = [], []
    with throwaway_postgres() as dsn:
        env = {
            "RECSYS_DATABASE_URL": dsn.replace("postgresql://", "postgresql+asyncpg://", 1),
            "RECSYS_REDIS_URL": os.environ.get("RECSYS_BENCH_REDIS", "redis://127.0.0.1:6379/0"),
            "RECSYS_REDIS_PREFIX": f"recsys-bench-{uuid.uuid4().hex[:8]}:",
            "RECSYS_LOG_LEVEL": "WARNING",
        }
        with server(env) as base:
            for round_ in range(args.rounds):
                events = make_events(args.events, seed=round_)
                event_batches = batches(events, args.batch)
                bodies = [orjson.dumps({"events": b}) for b in event_batches]
                seconds = asyncio.run(http_round(base, bodies, args.clients))
                assert asyncio.run(count_and_truncate(dsn)) == args.events, "events lost"
                http_rates.append(args.events / seconds)
                records = [copy_records(b) for b in event_batches]
                seconds = asyncio.run(raw_round(dsn, records, args.clients))
                assert asyncio.run(count_and_truncate(dsn)) == args.events
                raw_rates.append(args.events / seconds)
                print(
                    f"round {round_ + 1}: http {http_rates[-1]:,.0f}/s  raw {raw_rates[-1]:,.0f}/s"
                )
    http, raw = median(http_rates), median(raw_rates)
    return {
        "events_per_round": args.events,
        "batch": args.batch,
        "clients": args.clients,
        "rounds": args.rounds,
        "http_events_per_s": http_rates,
        "raw_copy_events_per_s": raw_rates,
        "median_http_events_per_s": http,
        "median_raw_copy_events_per_s": raw,
        "ratio_http_to_raw": http / raw,
    }


def main() -> None:
    """Parse arguments, run, print the table, write JSON."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    result = run(parser.parse_args())
    print("\n| path | events/s (median) |\n|---|---|")
    print(f"| POST /events (uvicorn, 1 worker) | {result['median_http_events_per_s']:,.0f} |")
    print(f"| raw COPY, same rows and table | {result['median_raw_copy_events_per_s']:,.0f} |")
    print(f"| ratio HTTP / raw | {result['ratio_http_to_raw']:.2f} |")
    print(f"wrote {write_result('ingest', result)}")


if __name__ == "__main__":
    main()
