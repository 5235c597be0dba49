"""Client CPU per hot-path Redis call: redis-py's pooled client against the shared connection.

Both run the cache's LOOKUP script for a cached user from 16 concurrent callers on uvloop, as
the server does, in alternating rounds in one process; the table shows medians of the client's
CPU microseconds per call (the Redis server's own CPU is not counted).
Run: .venv/bin/python bench/redis_client.py [--calls 4000] [--rounds 5]
Writes bench/results/redis_client.json.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.cache import RedisCache
from bench.common import median, write_result

REDIS_URL = os.environ.get("RECSYS_BENCH_REDIS", "redis://127.0.0.1:6379/0")
CONCURRENCY = 16


async def cpu_per_call(call: Callable[[], Awaitable[Any]], calls: int) -> float:
    """Client CPU microseconds per call, CONCURRENCY callers sharing `calls`."""

    async def caller() -> None:
        for _ in range(calls // CONCURRENCY):
            await call()

    started = time.process_time()
    await asyncio.gather(*(caller() for _ in range(CONCURRENCY)))
    return (time.process_time() - started) / (calls // CONCURRENCY * CONCURRENCY) * 1e6


def lookup_of(cache: RedisCache) -> Callable[[], Awaitable[Any]]:
    """One lookup of the benchmark's cached user."""
    return lambda: cache.lookup("u", "mf:v1")


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Alternate the two clients for `rounds` rounds over the same cached user."""
    prefix = f"recsys-bench-{uuid.uuid4().hex[:8]}:"
    options = dict(prefix=prefix, history_len=200, ttl_s=60, timeout_s=0.25)
    # shared_connection=False: the redis-py path, as used before the shared connection.
    pooled = RedisCache(REDIS_URL, **options, shared_connection=False)  # type: ignore[arg-type]
    shared = RedisCache(REDIS_URL, **options)  # type: ignore[arg-type]
    seen = await shared.lookup("u", "mf:v1")
    await shared.store("u", "mf:v1", seen, b"\x00" * 1300, None)  # a state's typical size
    clients = {"redis-py pool": pooled, "shared connection": shared}
    samples: dict[str, list[float]] = {name: [] for name in clients}
    try:
        for cache in clients.values():  # warm-up: connections, script loads
            await cpu_per_call(lookup_of(cache), 800)
        for _ in range(args.rounds):
            for name, cache in clients.items():
                samples[name].append(await cpu_per_call(lookup_of(cache), args.calls))
    finally:
        await shared.drop_users(["u"])
        for cache in clients.values():
            await cache.close()
    medians = {name: median(values) for name, values in samples.items()}
    return {
        "calls_per_round": args.calls,
        "concurrency": CONCURRENCY,
        "rounds": samples,
        "median_us_per_call": medians,
        "ratio": medians["redis-py pool"] / medians["shared connection"],
    }


def main() -> None:
    """Run, print the table, write JSON."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=4000)
    parser.add_argument("--rounds", type=int, default=5)
    result = uvloop.run(measure(parser.parse_args()))
    print("| client | client CPU us per lookup (median) |\n|---|---|")
    for name, value in result["median_us_per_call"].items():
        print(f"| {name} | {value:.1f} |")
    print(f"redis-py / shared: {result['ratio']:.1f}x")
    print("wrote", write_result("redis_client", result))


if __name__ == "__main__":
    main()
