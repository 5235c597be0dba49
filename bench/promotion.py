"""A promotion under load: the share of cold requests and the latency in the window after a new
version is promoted, with the warm-up (app/serving/warmup.py) on and off.

A real server (`recsys serve`, one worker) on a throwaway Postgres database and a fresh Redis
prefix serves a model trained on a generated shop (models/synth.py: log-normal user activity).
The load generator (bench/loadgen.py, its own process) keeps 16 connections busy over users
drawn by their activity (active users ask more often). Per mode: the server starts, one request
per user fills the cache, the load runs `--steady` seconds (the reference), then a copy of
the serving checkpoint is registered and promoted as a new version (as `recsys models
promote` does) and the load runs `--window` seconds more, measured as its first `--head`
seconds and the rest. Cold share = cache misses / lookups in a phase (the server's /metrics);
p50/p99 from the load generator; swap_after_s: when /readyz first showed the new version.
Same weights in the new version: only the cache differs.
Run: .venv/bin/python bench/promotion.py [--window 60] [--model sasrec|mf] [--out NAME]. Writes
bench/results/promotion.json.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import server, service_env, throwaway_postgres, write_result
from bench.serve import copy_rows, flush_prefix, load
from models.data import Interactions
from models.split import build_leave_one_out
from models.synth import EVENT_TYPES, SynthConfig, event_blocks, item_id, make_shop
from models.train import save_trained, train_model

OVERRIDES: dict[str, dict[str, Any]] = {
    "mf": {"factors": 64, "iterations": 5},
    "sasrec": {"max_len": 50, "hidden": 64, "max_seconds": 30.0, "progress": False},
}


def generate(items: int, users: int, events: int) -> Interactions:
    """The generated shop's events (one seeded run of models/synth.py)."""
    config = SynthConfig(items=items, users=users, events=events)
    blocks = list(event_blocks(config, make_shop(config)))
    user = np.concatenate([b.user for b in blocks])
    item = np.concatenate([b.item for b in blocks])
    return Interactions(
        user_ids=np.array([f"u{n}" for n in user]),
        item_ids=np.array([item_id(int(n)) for n in item]),
        timestamps=np.concatenate([b.timestamp for b in blocks]),
        types=np.array(EVENT_TYPES)[np.concatenate([b.type for b in blocks])],
    )


async def seed(dsn: str, data: Interactions) -> None:
    """COPY the events into the database."""
    records = [
        (uuid.uuid4().hex, u, i, t, datetime.fromtimestamp(int(s), UTC))
        for u, i, t, s in zip(
            data.user_ids.tolist(),
            data.item_ids.tolist(),
            data.types.tolist() if data.types is not None else [],
            data.timestamps.tolist(),
            strict=True,
        )
    ]
    columns = ["event_id", "user_id", "item_id", "type", "event_time"]
    await copy_rows(dsn, "events", records, columns)


def traffic(data: Interactions, requests: int, model: str, seed: int = 0) -> list[str]:
    """/recommend paths for users drawn in proportion to their events."""
    users, counts = np.unique(data.user_ids, return_counts=True)
    rng = np.random.default_rng(seed)
    drawn = rng.choice(users, size=requests, p=counts / counts.sum())
    return [f"/recommend?user_id={u}&k=10&model={model}" for u in drawn]


async def promote(dsn: str, model: str, path: Path) -> None:
    """Register `path` as a version of `model` and make it the active one."""
    from app.db import repo
    from app.db.session import make_engine, make_sessionmaker
    from app.db.tables import ModelVersion

    engine = make_engine(dsn.replace("postgresql://", "postgresql+asyncpg://", 1), pool=False)
    try:
        async with make_sessionmaker(engine)() as session:
            row = ModelVersion(model_name=model, version=path.name, path=str(path), metrics={})
            await repo.add_model_version(session=session, row=row)
            await repo.activate_version(session=session, version=row)
    finally:
        await engine.dispose()


def lookups(base: str) -> dict[str, float]:
    """The server's cache lookups so far, by result."""
    text = httpx.get(f"{base}/metrics", timeout=10).text
    found = re.findall(r'recsys_cache_lookups_total\{result="(\w+)"\} ([0-9.e+]+)', text)
    return {result: float(value) for result, value in found}


class SwapWatch(threading.Thread):
    """Polls /readyz until `model` serves `version`; records when, and the warm-up report."""

    def __init__(self, base: str, model: str, version: str) -> None:
        super().__init__(daemon=True)
        self.base, self.model, self.version = base, model, version
        self.started = time.monotonic()
        self.swap_after_s: float | None = None
        self.warmup: dict[str, Any] = {}

    def run(self) -> None:
        """Poll every 0.2 s for up to 5 minutes."""
        while time.monotonic() - self.started < 300:
            try:
                models = httpx.get(f"{self.base}/readyz", timeout=10).json()["models"]
            except (httpx.HTTPError, ValueError, KeyError):
                models = {}
            if models.get("loaded", {}).get(self.model) == self.version:
                self.swap_after_s = round(time.monotonic() - self.started, 2)
                self.warmup = models.get("warmup", {}).get(self.model, {})
                return
            time.sleep(0.2)


def measure(
    dsn: str,
    env: dict[str, str],
    traffic_paths: list[str],
    version: Path,
    args: argparse.Namespace,
) -> dict[str, Any]:
    """One mode: a fill, steady load, the promotion, the window after it (in two parts)."""
    prefix = f"recsys-bench-{uuid.uuid4().hex[:8]}:"
    env = {**env, "RECSYS_REDIS_PREFIX": prefix}
    distinct = list(dict.fromkeys(traffic_paths))
    # Each phase starts at its own place in the traffic (the load generator starts at its
    # first path).
    third = len(traffic_paths) // 3
    phases = [traffic_paths[n * third :] + traffic_paths[: n * third] for n in range(3)]
    try:
        with server(env) as base:
            load(base, distinct, _timed(args, 600), once=True)  # every user's state cached
            snapshots = [lookups(base)]
            steady = load(base, phases[0], _timed(args, args.steady))
            snapshots.append(lookups(base))
            asyncio.run(promote(dsn, args.model, version))
            watch = SwapWatch(base, args.model, version.name)
            watch.start()
            head = load(base, phases[1], _timed(args, args.head))
            snapshots.append(lookups(base))
            rest = load(base, phases[2], _timed(args, args.window - args.head))
            snapshots.append(lookups(base))
            watch.join(timeout=1)
    finally:
        flush_prefix(prefix)
    parts = {"before": steady, "after_head": head, "after_rest": rest}
    result: dict[str, Any] = {
        name: {**part, "cold_share": cold_share(snapshots[n], snapshots[n + 1])}
        for n, (name, part) in enumerate(parts.items())
    }
    result["after"] = {
        "requests": head["requests"] + rest["requests"],
        "cold_share": cold_share(snapshots[1], snapshots[3]),
    }
    return {**result, "swap_after_s": watch.swap_after_s, "warmup": watch.warmup}


def _timed(args: argparse.Namespace, seconds: float) -> argparse.Namespace:
    """The load generator's arguments for one phase."""
    return argparse.Namespace(clients=args.clients, seconds=seconds)


def cold_share(start: dict[str, float], end: dict[str, float]) -> float:
    """Misses over lookups between two snapshots."""
    hits = end.get("hit", 0.0) - start.get("hit", 0.0)
    misses = end.get("miss", 0.0) - start.get("miss", 0.0)
    return misses / (hits + misses) if hits + misses else 0.0


def prepare(args: argparse.Namespace, tmp: Path) -> tuple[Interactions, Path]:
    """The shop's events and the trained checkpoint, tmp/models/<model>/v1."""
    data = generate(args.items, args.users, args.events)
    split = build_leave_one_out(data, k=2)
    trained = train_model(args.model, split, OVERRIDES.get(args.model, {}), refit=False)
    target = tmp / "models" / args.model / "v1"
    save_trained(trained.model, trained.report, split, target)
    return data, target


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Set up once, then measure each mode on its own server and Redis prefix."""
    with tempfile.TemporaryDirectory() as tmp_dir, throwaway_postgres() as dsn:
        tmp = Path(tmp_dir)
        data, checkpoint = prepare(args, tmp)
        asyncio.run(seed(dsn, data))
        paths = traffic(data, 200_000, args.model)
        env = service_env(
            dsn,
            tmp / "models",
            refresh_interval_s="1",
            warm_seconds=str(args.warm_seconds),
            # The traffic is drawn by all-time activity: the window covers the whole history.
            warm_window_days=str(args.warm_window_days),
        )
        modes: dict[str, Any] = {}
        for n, (mode, users) in enumerate((("off", 0), ("on", args.warm_users))):
            version = tmp / "versions" / f"{args.model}-promoted-{n}"
            shutil.copytree(checkpoint, version)
            mode_env = {**env, "RECSYS_WARM_USERS": str(users)}
            modes[mode] = measure(dsn, mode_env, paths, version, args)
    return {
        "model": args.model,
        "shop": {"items": args.items, "users": args.users, "events": args.events},
        "clients": args.clients,
        "workers": 1,
        "steady_s": args.steady,
        "head_s": args.head,
        "window_s": args.window,
        "warm_users": args.warm_users,
        "warm_seconds": args.warm_seconds,
        "warm_window_days": args.warm_window_days,
        "modes": modes,
        "load_average_at_end": os.getloadavg(),
    }


def main() -> None:
    """Parse arguments, run, print the table, write JSON."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="sasrec", choices=sorted(OVERRIDES))
    parser.add_argument("--items", type=int, default=5_000)
    parser.add_argument("--users", type=int, default=5_000)
    parser.add_argument("--events", type=int, default=150_000)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--steady", type=float, default=15.0, help="measured before, seconds")
    parser.add_argument("--window", type=float, default=60.0, help="measured after, seconds")
    parser.add_argument("--head", type=float, default=10.0, help="its first part, seconds")
    parser.add_argument("--warm-users", type=int, default=2_000)
    parser.add_argument("--warm-seconds", type=float, default=30.0)
    parser.add_argument("--warm-window-days", type=float, default=180.0)
    parser.add_argument("--out", default="promotion", help="bench/results/<out>.json")
    args = parser.parse_args()
    outcome = run(args)
    print(f"\n{outcome['model']}, {outcome['clients']} connections, one worker")
    print("| warm-up | window | cold share | req/s | p50 ms | p99 ms | swap after s | warmed |")
    print("|---|---|---|---|---|---|---|---|")
    steady, head, window = outcome["steady_s"], outcome["head_s"], outcome["window_s"]
    labels = {
        "before": f"{steady:.0f} s before",
        "after_head": f"0-{head:.0f} s after promotion",
        "after_rest": f"{head:.0f}-{window:.0f} s after",
    }
    for mode, result in outcome["modes"].items():
        for part, label in labels.items():
            r = result[part]
            swap = result["swap_after_s"] if part == "after_head" else ""
            warmed = result["warmup"].get("warmed", "") if part == "after_head" else ""
            print(
                f"| {mode} | {label} | {r['cold_share']:.1%} | {r['rps']:,.0f} | "
                f"{r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {swap} | {warmed} |"
            )
        share = result["after"]["cold_share"]
        print(f"| {mode} | 0-{window:.0f} s after | {share:.1%} | | | | | |")
    print(f"wrote {write_result(args.out, outcome)}")


if __name__ == "__main__":
    main()
