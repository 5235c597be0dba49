"""Retraining end to end: events in over HTTP, retrain, the gate, crash safety, replicas."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.config import Settings
from app.db import repo
from app.ingest.meaning import RatingRule
from app.training.demo import synthetic_catalog, synthetic_shop
from app.training.retrain import gate, read_events, retrain
from models.checkpoint import load_checkpoint
from tests.app.cli.test_cli import RECSYS, clean_env, wait_for
from tests.conftest import free_port, running_app

FAST = {"mf": {"factors": 16, "iterations": 6}}


async def post_shop(client: httpx.AsyncClient, users: int = 150) -> None:
    """The generated shop's events, posted over HTTP in batches."""
    shop = synthetic_shop(users=users, items=60, length=12, groups=3)
    events = [
        {
            "event_id": f"shop-{n}",
            "user_id": str(u),
            "item_id": str(i),
            "type": "view",
            "timestamp": int(t),
        }
        for n, (u, i, t) in enumerate(
            zip(shop.user_ids, shop.item_ids, shop.timestamps, strict=True)
        )
    ]
    for start in range(0, len(events), 1000):
        response = await client.post("/events", json={"events": events[start : start + 1000]})
        assert response.status_code == 200, response.text


def test_gate() -> None:
    assert gate({"ndcg@10": 0.1}, None, 0.0)[0]
    assert gate({"ndcg@10": 0.1}, {"ndcg@10": 0.1005}, 0.001)[0]
    promoted, reason = gate({"ndcg@10": 0.05}, {"ndcg@10": 0.1}, 0.001)
    assert not promoted and "0.0500" in reason and "0.1000" in reason


async def test_retrain_promotes_serves_and_gates(pg_settings: Settings) -> None:
    async with running_app(pg_settings) as client:
        services = client.app.state.services  # type: ignore[attr-defined]
        await post_shop(client)
        (first,) = await retrain(pg_settings, services.sessionmaker, ["mf"], FAST)
        assert first.status == "active" and first.val["ndcg@10"] > 0.2
        await client.post("/models/reload")
        served = {m["name"]: m["version"] for m in (await client.get("/models")).json()["models"]}
        assert served == {"mf": first.version}
        body = (await client.get("/recommend", params={"user_id": "user-3", "model": "mf"})).json()
        assert body["model_version"] == first.version and body["fallback"] is None
        # One iteration of a one-factor model is worse: registered, not promoted.
        (worse,) = await retrain(
            pg_settings, services.sessionmaker, ["mf"], {"mf": {"factors": 1, "iterations": 1}}
        )
        assert worse.status == "candidate" and "kept as candidate" in worse.reason
        assert worse.active_val == pytest.approx(first.val, abs=1e-6)  # same slice, same data
        await client.post("/models/reload")
        body = (await client.get("/recommend", params={"user_id": "user-3", "model": "mf"})).json()
        assert body["model_version"] == first.version
        async with services.sessionmaker() as session:
            rows = {r.version: r for r in await repo.model_versions(session=session)}
        assert (rows[first.version].status, rows[worse.version].status) == ("active", "candidate")
        assert rows[first.version].event_count == 150 * 12
        served_meta = json.loads((Path(rows[first.version].path) / "meta.json").read_text())
        held_out = Path(rows[first.version].path) / "validation" / "meta.json"
        assert served_meta["trained_on"] == "all events" and held_out.is_file()


def run_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment a subprocess needs to work on the same deployment."""
    return clean_env(
        RECSYS_DATABASE_URL=settings.database_url,
        RECSYS_REDIS_URL=str(settings.redis_url),
        RECSYS_REDIS_PREFIX=settings.redis_prefix,
        RECSYS_MODEL_DIR=str(settings.model_dir),
        RECSYS_LOG_LEVEL="WARNING",
        **extra,
    )


async def test_killed_retrain_leaves_serving_intact(pg_settings: Settings) -> None:
    async with running_app(pg_settings) as client:
        services = client.app.state.services  # type: ignore[attr-defined]
        await post_shop(client)
        (_first,) = await retrain(pg_settings, services.sessionmaker, ["mf"], FAST)
        process = subprocess.Popen(
            [
                RECSYS,
                "retrain",
                "--models",
                "mf,sasrec",
                "--set",
                "sasrec.epochs=10000",
                "--set",
                "sasrec.patience=10000",
            ],
            env=run_env(pg_settings),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        await asyncio.sleep(6)  # well into training
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        await client.post("/models/reload")
        async with services.sessionmaker() as session:
            rows = await repo.model_versions(session=session)
        # mf may have finished and been registered before the kill; sasrec never was.
        assert {r.model_name for r in rows} == {"mf"}
        assert all(r.status in ("active", "candidate", "retired") for r in rows)
        models = (await client.get("/models")).json()["models"]
        assert [m["name"] for m in models] == ["mf"]
        body = (await client.get("/recommend", params={"user_id": "user-3", "model": "mf"})).json()
        assert body["model_version"] in {r.version for r in rows if r.status == "active"}
        assert len(body["items"]) == 10


async def test_two_replicas_switch_to_the_promoted_version(pg_settings: Settings) -> None:
    async with running_app(pg_settings) as client:
        services = client.app.state.services  # type: ignore[attr-defined]
        await post_shop(client)
        (first,) = await retrain(pg_settings, services.sessionmaker, ["mf"], FAST)
        ports = [free_port(), free_port()]
        env = run_env(pg_settings, RECSYS_REFRESH_INTERVAL_S="0.5")
        servers = [
            subprocess.Popen(
                [RECSYS, "serve", "--port", str(p)],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            for p in ports
        ]
        try:
            for port, server in zip(ports, servers, strict=True):
                wait_for(f"http://127.0.0.1:{port}/healthz", server)
            assert versions_served(ports) == [first.version, first.version]
            pg_settings.promotion_tolerance = 1.0  # this test is about the switch, not the gate
            (second,) = await retrain(
                pg_settings,
                services.sessionmaker,
                ["mf"],
                {"mf": {"factors": 16, "iterations": 6, "seed": 1}},
            )
            assert second.status == "active"
            deadline = time.monotonic() + 20
            while versions_served(ports) != [second.version] * 2 and time.monotonic() < deadline:
                await asyncio.sleep(0.2)
            assert versions_served(ports) == [second.version, second.version]
        finally:
            for server in servers:
                server.terminate()
                server.wait(timeout=20)


def versions_served(ports: list[int]) -> list[Any]:
    """The mf version each replica answers /recommend with."""
    return [
        httpx.get(f"http://127.0.0.1:{p}/recommend", params={"user_id": "user-3", "model": "mf"})
        .json()
        .get("model_version")
        for p in ports
    ]


async def test_retrain_gives_content_models_the_stored_catalog(pg_settings: Settings) -> None:
    catalog = [
        {"item_id": i.item_id, "title": i.title, "categories": i.categories}
        for i in synthetic_catalog(items=60, groups=3)
    ]
    async with running_app(pg_settings) as client:
        services = client.app.state.services  # type: ignore[attr-defined]
        await post_shop(client)
        assert (await client.put("/items", json={"items": catalog[:50]})).status_code == 200
        (outcome,) = await retrain(pg_settings, services.sessionmaker, ["content"])
        assert outcome.status == "active" and outcome.val["ndcg@10"] > 0
        async with services.sessionmaker() as session:
            (row,) = await repo.model_versions(session=session)
        checkpoint = load_checkpoint(Path(row.path))
        assert checkpoint.meta["content_encoder"] == services.content.version
        model = checkpoint.model
        has_text = model.item_vectors().norm(dim=1) > 0
        assert int(has_text.sum()) == 50  # the ten items without text have zero vectors
        # The vectors were stored: the service's own index takes them without encoding again.
        await client.post("/models/reload")
        assert len(services.content.item_ids) == 50 and services.content.pending == 0


async def test_retrain_reads_weights_and_leaves_dislikes_out(pg_settings: Settings) -> None:
    """Dislikes, hides and low ratings never become training input, even with a weight; every
    other event carries its type's weight into the split (a pair keeps its largest)."""
    sent = [  # (item, type, value) of one user, in time order
        ("a", "view", None),
        ("b", "view", None),
        ("a", "purchase", None),
        ("d", "dislike", None),
        ("e", "rating", 1.0),  # <= rating_negative_max: a dislike
        ("f", "rating", 3.0),  # neutral: input
        ("g", "rating", 5.0),
        ("h", "hide", None),
        ("i", "click", None),
    ]
    events = [
        {"user_id": "u", "item_id": item, "type": kind, "timestamp": 1_700_000_000 + n}
        | ({} if value is None else {"value": value})
        for n, (item, kind, value) in enumerate(sent)
    ]
    weights = {"view": 1.0, "purchase": 5.0, "rating": 2.0, "click": 1.5}
    weights |= {"dislike": 3.0, "hide": 1.0}  # weighted negatives are still left out
    async with running_app(pg_settings) as client:
        services = client.app.state.services  # type: ignore[attr-defined]
        response = await client.post("/events", json={"events": events})
        assert response.status_code == 200, response.text
        data = await read_events(services.sessionmaker, weights, RatingRule(4.0, 2.0))
        plain = await read_events(services.sessionmaker, dict.fromkeys(weights, 1.0))
    assert [data.item_ids[i] for i in data.items] == ["a", "b", "a", "f", "g", "i"]
    assert list(data.weights) == [1.0, 1.0, 5.0, 2.0, 2.0, 1.5]
    split = data.split(min_events=2)
    assert split.train_weights is not None and split.val_weights is not None
    train = [split.item_ids.ids[i] for i in split.train[0]]
    assert train == ["a", "b", "f", "g"] and split.item_ids.ids[split.val[0]] == "i"
    assert split.train_weights[0].tolist() == [5.0, 1.0, 2.0, 2.0]  # a: view, then purchase
    assert split.val_weights.tolist() == [1.5]
    # The stored events' times go to fit (SASRec's time gaps), in epoch seconds.
    assert split.train_times is not None and split.val_times is not None
    assert split.train_times[0].tolist() == [1_700_000_000 + n for n in (0, 1, 5, 6)]
    assert split.val_times.tolist() == [1_700_000_008]
    # Every weight 1: the split is unweighted, as before weights existed.
    assert list(plain.weights) == [1.0] * 6 and plain.split(min_events=2).train_weights is None
