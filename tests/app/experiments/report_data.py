"""Generated exposures and events for the report's tests, and the report's per-user sums
recomputed in plain Python (the old report's attribution, one event at a time)."""

from __future__ import annotations

import random
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.db import repo
from app.domain import OVERRIDE

START = datetime(2026, 11, 1, tzinfo=UTC)
WINDOW = timedelta(seconds=1800)
PRE_WINDOW = timedelta(days=14)
ARMS = [{"name": "a", "model": "mf", "weight": 1.0}, {"name": "b", "model": "mf", "weight": 1.0}]


def _event(user: str, item: str, kind: str, at: datetime, **extra: Any) -> dict[str, Any]:
    return {"user_id": user, "item_id": item, "type": kind, "event_time": at, "value": None,
            "recommendation_id": None, **extra}  # fmt: skip


def scenario(seed: int, name: str, users: int = 60) -> tuple[list[dict[str, Any]], list[dict]]:
    """Exposures (some overrides) and events: clicks with and without a recommendation_id,
    some late, some on items not shown; purchases with values; add-to-carts; views before the
    start (some before the pre-period)."""
    rng = random.Random(seed)
    exposures: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    for u in range(users):
        user, arm = f"{name}-u{u}", ARMS[u % 2]["name"]
        for k in range(rng.randint(1, 5)):
            at = START + timedelta(minutes=rng.uniform(0, 600))
            shown = [f"i{rng.randrange(8)}" for _ in range(3)]
            exposures.append({
                "recommendation_id": f"{name}-{u}-{k}", "user_id": user, "model_name": "mf",
                "model_version": "v1", "experiment": name,
                "variant": None if rng.random() < 0.1 else arm, "items": {"items": shown},
                "created_at": at, "latency_ms": rng.uniform(5, 50),
                "fallback": "backfill" if rng.random() < 0.2 else None,
            })  # fmt: skip
            if rng.random() < 0.6:
                rid = f"{name}-{u}-{k}" if rng.random() < 0.5 else None
                when = at + timedelta(seconds=rng.uniform(0, 2400))  # a quarter past the window
                item = rng.choice(shown)
                events.append(_event(user, item, "click", when, recommendation_id=rid))
                if rng.random() < 0.4:
                    value = round(rng.uniform(1, 100), 2)
                    later = when + timedelta(seconds=10)
                    events.append(
                        _event(user, item, "purchase", later, value=value, recommendation_id=rid)
                    )
                if rng.random() < 0.3:
                    events.append(_event(user, item, "add_to_cart", when, recommendation_id=rid))
            if rng.random() < 0.2:
                events.append(_event(user, "not-shown", "click", at + timedelta(seconds=5)))
        for _ in range(rng.randint(0, 4)):
            before = START - timedelta(days=rng.uniform(0, 20))
            events.append(_event(user, "i0", "view", before))
    # Another experiment's exposure and a click naming it: never counted here.
    exposures.append({**exposures[0], "recommendation_id": f"{name}-other", "experiment": "other"})
    events.append(_event(exposures[0]["user_id"], "i0", "click", START + timedelta(minutes=1),
                         recommendation_id=f"{name}-other"))  # fmt: skip
    for n, event in enumerate(events):
        event["event_id"] = f"{name}-e{n}"
    return exposures, events


async def store(session: AsyncSession, exposures: list[dict], events: list[dict]) -> None:
    """Write the rows through app.db.repo and commit."""
    await repo.insert_exposures(session=session, rows=exposures)
    columns = repo.EventColumns(*([e[c] for e in events] for c in repo.EVENT_COLUMNS))
    await repo.insert_events(session=session, events=columns)
    await session.commit()


def _attribute(event: dict, mine: list[dict], by_id: dict[str, dict]) -> dict | None:
    """The exposure an event counts for, as app/experiments/report.py did it in Python."""
    if event["recommendation_id"]:
        return by_id.get(event["recommendation_id"])
    candidates = [
        x for x in mine
        if x["user_id"] == event["user_id"]
        and event["event_time"] - WINDOW <= x["created_at"] <= event["event_time"]
        and event["item_id"] in x["items"]["items"]
    ]  # fmt: skip
    return max(candidates, key=lambda x: x["created_at"], default=None)


def expected_sums(
    name: str, exposures: list[dict], events: list[dict], conversions: tuple[str, ...]
) -> dict[str, dict[str, float]]:
    """Per arm: the sums app.db.experiments.arm_sums returns, from per-user rows."""
    mine = [x for x in exposures if x["experiment"] == name]
    by_id = {x["recommendation_id"]: x for x in mine}
    clicked: set[str] = set()
    converted: set[str] = set()
    revenue: dict[str, float] = defaultdict(float)
    for event in events:
        exposure = _attribute(event, mine, by_id)
        if exposure is None:
            continue
        rid = exposure["recommendation_id"]
        clicked.update([rid] if event["type"] == "click" else [])
        converted.update([rid] if event["type"] in conversions else [])
        if event["type"] == "purchase":
            revenue[rid] += event["value"] or 0
    pre: dict[str, int] = defaultdict(int)
    for event in events:
        if START - PRE_WINDOW <= event["event_time"] < START:
            pre[event["user_id"]] += 1
    rows: dict[tuple[str, str], dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for x in mine:
        row, rid = rows[(x["user_id"], x["variant"] or OVERRIDE)], x["recommendation_id"]
        row["exposures"] += 1
        row["clicks"] += rid in clicked
        row["conversions"] += rid in converted
        row["revenue"] += revenue[rid]
        row["timed"] += 1
        row["fallbacks"] += x["fallback"] is not None
    return _per_arm(rows, pre)


def _per_arm(
    rows: dict[tuple[str, str], dict[str, float]], pre: dict[str, int]
) -> dict[str, dict[str, float]]:
    """Sum per-user rows into the per-arm sufficient statistics."""
    arms: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for (user, arm), row in rows.items():
        total, x, c = arms[arm], row["exposures"], pre[user]
        total["n"] += 1
        sums = {"sx": x, "sxx": x * x, "sc": c, "scc": c * c, "sxc": x * c}
        sums.update(timed=row["timed"], fallbacks=row["fallbacks"])
        for key, value in sums.items():
            total[key] += value
        for metric in ("clicks", "conversions", "revenue"):
            y = row[metric]
            total[f"{metric}_s"] += y
            total[f"{metric}_ss"] += y * y
            total[f"{metric}_sx"] += y * x
            total[f"{metric}_sc"] += y * c
    return {arm: dict(total) for arm, total in arms.items()}
