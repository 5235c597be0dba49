"""The whole pipeline on ml1m-half-loo: events over HTTP -> retrain -> /recommend -> test metrics.

Posts train + val as events (at the ratings' own timestamps) to a real server on Postgres and
Redis, runs `recsys retrain`, then asks /recommend for every user and scores the answers
against test.tsv (HR@10, NDCG@10), to set beside the offline `recsys compare` numbers. The
served checkpoint's own lists, computed by the model library alone (with the same times), are
scored too, and compared with the served lists item for item.
Run: .venv/bin/python bench/e2e.py [--models mf,sasrec] [--set sasrec.max_seconds=600]
Writes bench/results/e2e.json and prints a table with the wall time of each stage.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.config import Settings
from bench.common import server, throwaway_postgres, write_result
from models.checkpoint import load_checkpoint
from models.data import default_data_dir, load_split_dir

REDIS_URL = os.environ.get("RECSYS_BENCH_REDIS", "redis://127.0.0.1:6379/0")


def events(data: Any) -> list[dict[str, Any]]:
    """Train then val rows as rating events, each user's in time order (val is the latest), at
    the ratings' own times (SASRec's time gaps read them), else one second apart."""
    rows = []
    times = data.train_plus_val_times()
    for user, history in enumerate(data.train_plus_val()):
        user_id = data.user_ids.ids[user]
        stamps = times[user].tolist() if times is not None else None
        for step, item in enumerate(history.tolist()):
            rows.append(
                {
                    "event_id": f"{user_id}-{step}",
                    "user_id": user_id,
                    "item_id": data.item_ids.ids[item],
                    "type": "rating",
                    "timestamp": stamps[step] if stamps is not None else 1_500_000_000 + step,
                }
            )
    return rows


async def post_all(base: str, rows: list[dict[str, Any]], clients: int = 4) -> None:
    """POST the events in batches of 1,000 from several clients, each client a share of the
    users: a user's events are stored in their order, which breaks ties between equal
    timestamps (ratings in the same second) as the dataset does."""
    shares: list[list[dict[str, Any]]] = [[] for _ in range(clients)]
    for row in rows:
        shares[hash(row["user_id"]) % clients].append(row)
    bodies = [
        [orjson.dumps({"events": share[i : i + 1000]}) for i in range(0, len(share), 1000)]
        for share in shares
    ]
    async with httpx.AsyncClient(base_url=base, timeout=120) as client:

        async def worker(mine: list[bytes]) -> None:
            for body in mine:
                response = await client.post(
                    "/events", content=body, headers={"content-type": "application/json"}
                )
                response.raise_for_status()

        await asyncio.gather(*(worker(mine) for mine in bodies))


async def ask_all(base: str, users: list[str], model: str, k: int = 10) -> dict[str, list[str]]:
    """Every user's top-k from `model`, 8 requests in flight."""
    answers: dict[str, list[str]] = {}
    async with httpx.AsyncClient(base_url=base, timeout=60) as client:

        async def worker(mine: list[str]) -> None:
            for user in mine:
                body = (
                    await client.get("/recommend", params={"user_id": user, "k": k, "model": model})
                ).json()
                answers[user] = [item["item_id"] for item in body["items"]]

        await asyncio.gather(*(worker(users[n::8]) for n in range(8)))
    return answers


def score(answers: dict[str, list[str]], targets: dict[str, str]) -> dict[str, float]:
    """HR@10 and NDCG@10 over every test user."""
    hits, gains = 0, 0.0
    for user, target in targets.items():
        ranked = answers.get(user, [])
        if target in ranked:
            hits += 1
            gains += 1 / math.log2(ranked.index(target) + 2)
    return {"hr@10": hits / len(targets), "ndcg@10": gains / len(targets)}


def offline_answers(checkpoint: Path, data: Any, k: int = 10) -> dict[str, list[str]]:
    """Every user's top-k from the served checkpoint, computed by the model library alone (no
    service code), input train + val: what serving must reproduce."""
    loaded = load_checkpoint(checkpoint)
    ids = loaded.item_ids
    histories = [
        ids.indices(np.asarray(data.item_ids.ids, dtype=str)[h]) for h in data.train_plus_val()
    ]
    times = data.train_plus_val_times()  # as posted; models without time gaps ignore them
    answers: dict[str, list[str]] = {}
    for start in range(0, len(histories), 512):
        batch = slice(start, start + 512)
        top, _ = loaded.model.recommend(
            histories[batch], k, times=None if times is None else times[batch]
        )
        for row, items in enumerate(top.tolist()):
            answers[data.user_ids.ids[start + row]] = [ids.ids[i] for i in items]
    return answers


def agreement(served: dict[str, list[str]], offline: dict[str, list[str]]) -> float:
    """Share of users whose served list is the offline list, item for item."""
    return sum(served.get(user) == items for user, items in offline.items()) / len(offline)


def run_retrain(env: dict[str, str], models: str, settings: list[str]) -> list[dict[str, Any]]:
    """`recsys retrain` as operators run it; returns the outcome lines."""
    command = [str(Path(sys.executable).with_name("recsys")), "retrain", "--models", models]
    for setting in settings:
        command += ["--set", setting]
    done = subprocess.run(
        command, env={**os.environ, **env}, capture_output=True, text=True, check=True
    )
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Every stage, timed."""
    data = load_split_dir(Path(args.data))
    targets = {data.user_ids.ids[u]: data.item_ids.ids[t] for u, t in enumerate(data.test.tolist())}
    rows = events(data)
    stages: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as models_dir, throwaway_postgres() as dsn:
        env = {
            "RECSYS_DATABASE_URL": dsn.replace("postgresql://", "postgresql+asyncpg://", 1),
            "RECSYS_REDIS_URL": REDIS_URL,
            "RECSYS_MODEL_DIR": models_dir,
            "RECSYS_REDIS_PREFIX": f"recsys-e2e-{uuid.uuid4().hex[:8]}:",
            "RECSYS_LOG_LEVEL": "WARNING",
            "RECSYS_REFRESH_INTERVAL_S": "1",
            # Serving encodes the latest RECSYS_HISTORY_LEN events (the setting's default unless
            # --history-len says otherwise) and masks every item the user has seen.
            **({"RECSYS_HISTORY_LEN": str(args.history_len)} if args.history_len else {}),
        }
        with server(env) as base:
            started = time.perf_counter()
            asyncio.run(post_all(base, rows))
            stages["ingest events over HTTP"] = time.perf_counter() - started
            started = time.perf_counter()
            outcomes = run_retrain(env, args.models, args.set)
            stages["recsys retrain"] = time.perf_counter() - started
            time.sleep(3)  # the server's poll picks the promoted versions up
            results = {}
            for outcome in outcomes:
                started = time.perf_counter()
                answers = asyncio.run(ask_all(base, list(targets), outcome["model"]))
                stages[f"query {outcome['model']} for every user"] = time.perf_counter() - started
                offline = offline_answers(
                    Path(models_dir) / outcome["model"] / outcome["version"], data
                )
                results[outcome["model"]] = {
                    "test": score(answers, targets),
                    "offline_test": score(offline, targets),
                    "identical_lists": agreement(answers, offline),
                    "outcome": outcome,
                }
    return {
        "events": len(rows),
        "users": len(targets),
        "history_len": args.history_len or Settings.model_fields["history_len"].default,
        "stages_s": stages,
        "models": results,
    }


def main() -> None:
    """Parse arguments, run, print, write JSON."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", default=str(default_data_dir() / "ml1m-half-loo"))
    parser.add_argument("--models", default="mf,sasrec")
    parser.add_argument("--set", action="append", default=[], help="model.key=value")
    parser.add_argument(
        "--history-len", type=int, default=None, help="default: the service's RECSYS_HISTORY_LEN"
    )
    result = run(parser.parse_args())
    print("\n| stage | seconds |\n|---|---|")
    for stage, seconds in result["stages_s"].items():
        print(f"| {stage} | {seconds:.1f} |")
    print(
        "\n| model | served test HR@10 | served test NDCG@10 | same checkpoint offline"
        " HR@10 / NDCG@10 | identical top-10 lists | val NDCG@10 (retrain) | train s |"
    )
    print("|---|---|---|---|---|---|---|")
    for name, r in result["models"].items():
        o, offline = r["outcome"], r["offline_test"]
        print(
            f"| {name} | {r['test']['hr@10']:.4f} | {r['test']['ndcg@10']:.4f} | "
            f"{offline['hr@10']:.4f} / {offline['ndcg@10']:.4f} | {r['identical_lists']:.1%} | "
            f"{o['val']['ndcg@10']:.4f} | {o['train_seconds']:.1f} |"
        )
    print(f"wrote {write_result('e2e', result)}")


if __name__ == "__main__":
    main()
