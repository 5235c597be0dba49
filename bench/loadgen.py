"""A small closed-loop HTTP/1.1 load generator (keep-alive, raw asyncio streams).

Run in its own process so its CPU is not the server's: python bench/loadgen.py URL PATHS_FILE
--clients 16 --seconds 10 [--once]. PATHS_FILE holds one request path per line; clients take
paths round-robin (with --once each path is requested once). Prints JSON: requests, errors,
seconds, rps, p50/p95/p99 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from urllib.parse import urlsplit


async def request(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str, path: str
) -> int:
    """One GET on a kept-alive connection; returns the status code."""
    writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    await reader.readexactly(length)
    return status


async def client(
    host: str,
    port: int,
    paths: list[str],
    next_index: list[int],
    deadline: float,
    once: bool,
    latencies: list[float],
    errors: list[int],
) -> None:
    """Send requests back to back until the deadline (or the paths run out with --once)."""
    reader, writer = await asyncio.open_connection(host, port)
    while time.perf_counter() < deadline:
        n = next_index[0]
        if once and n >= len(paths):
            break
        next_index[0] = n + 1
        started = time.perf_counter()
        status = await request(reader, writer, host, paths[n % len(paths)])
        latencies.append(time.perf_counter() - started)
        if status != 200:
            errors.append(status)
    writer.close()


async def run(
    url: str, paths: list[str], clients: int, seconds: float, once: bool
) -> dict[str, float]:
    """Drive the server with `clients` connections; summarise the latencies."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    latencies: list[float] = []
    errors: list[int] = []
    next_index = [0]
    started = time.perf_counter()
    deadline = started + seconds
    await asyncio.gather(
        *(
            client(host, port, paths, next_index, deadline, once, latencies, errors)
            for _ in range(clients)
        )
    )
    elapsed = time.perf_counter() - started
    ordered = sorted(latencies)

    def pct(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000 if ordered else 0.0

    return {
        "requests": len(ordered),
        "errors": len(errors),
        "seconds": elapsed,
        "rps": len(ordered) / elapsed,
        "p50_ms": pct(0.50),
        "p95_ms": pct(0.95),
        "p99_ms": pct(0.99),
    }


def main() -> None:
    """Parse arguments, run, print JSON."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("url")
    parser.add_argument("paths_file")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--once", action="store_true")
    args = parser.parse_args()
    with open(args.paths_file) as f:
        paths = [line.strip() for line in f if line.strip()]
    print(json.dumps(asyncio.run(run(args.url, paths, args.clients, args.seconds, args.once))))


if __name__ == "__main__":
    main()
