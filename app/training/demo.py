"""Demo checkpoints for `make run`: a newcomer's first curl returns real recommendations.

With ../shared/datasets present the demo uses MovieLens 100K (seeded into the database as
events, with titles in the catalog); without it, a small generated shop with sequential
patterns. Nothing happens when the model directory already holds checkpoints.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.config import Settings
from app.db import repo
from app.db.repo import EventColumns
from app.serving.registry import newest_versions
from models.data import Interactions, load_interactions
from models.split import build_leave_one_out
from models.train import save_trained, train_model

log = logging.getLogger(__name__)
DEMO_MODELS: dict[str, dict[str, Any]] = {
    "popularity": {},
    "mf": {},
    "sasrec": {"max_len": 50, "epochs": 40, "patience": 3, "max_seconds": 90, "progress": False},
}


def synthetic_shop(
    users: int = 300, items: int = 120, length: int = 16, groups: int = 6, seed: int = 0
) -> Interactions:
    """Users browse one item group in order from a random start, so the next item is
    predictable; no item repeats within a user (length <= group size)."""
    rng = np.random.default_rng(seed)
    group = items // groups
    length = min(length, group)
    rows_u, rows_i, rows_t = [], [], []
    for user in range(users):
        start = rng.integers(items)
        base = (start // group) * group
        for step in range(length):
            rows_u.append(f"user-{user}")
            rows_i.append(f"sku-{base + (start + step) % group}")
            rows_t.append(1_700_000_000 + user * 1000 + step)
    return Interactions(np.array(rows_u), np.array(rows_i), np.array(rows_t, dtype=np.int64))


def demo_data(data_dir: Path | None) -> tuple[Interactions, dict[str, str]]:
    """MovieLens 100K with titles when available, else the generated shop."""
    u_data = data_dir / "ml-100k" / "u.data" if data_dir else None
    if u_data is None or not u_data.is_file():
        return synthetic_shop(), {}
    titles = {}
    item_file = u_data.with_name("u.item")
    if item_file.is_file():
        for line in item_file.read_text(encoding="latin-1").splitlines():
            fields = line.split("|")
            titles[fields[0]] = fields[1]
    return load_interactions(u_data), titles


def train_demo(data: Interactions, model_dir: Path) -> list[Path]:
    """Train each demo model and save it as model_dir/<name>/demo-<time>."""
    split = build_leave_one_out(data, k=5)
    version = "demo-" + datetime.now(UTC).strftime("%Y%m%d%H%M%S")
    saved = []
    for name, overrides in DEMO_MODELS.items():
        trained = train_model(name, split, overrides, seed=0, refit=False)
        saved.append(save_trained(trained.model, trained.report, split, model_dir / name / version))
        val = trained.report.val.get("ndcg@10", float("nan"))
        log.info("demo model %s: val ndcg@10 %.4f", name, val)
    return saved


async def seed_database(
    data: Interactions, titles: dict[str, str], sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    """Store the demo interactions as events (once) and the titles in the catalog."""
    async with sessionmaker() as session:
        if await repo.count_events(session=session):
            return
        values = data.values.tolist() if data.values is not None else [None] * len(data)
        columns = EventColumns(
            event_id=[f"demo-{n}" for n in range(len(data))],
            user_id=data.user_ids.tolist(),
            item_id=data.item_ids.tolist(),
            type=["rating" if data.values is not None else "view"] * len(data),
            value=values,
            event_time=[datetime.fromtimestamp(int(t), UTC) for t in data.timestamps],
            recommendation_id=[None] * len(data),
        )
        await repo.insert_events(session=session, events=columns)
        now = datetime.now(UTC)
        items = [
            {"item_id": i, "title": t, "attributes": {}, "active": True, "updated_at": now}
            for i, t in titles.items()
        ]
        await repo.upsert_items(session=session, items=items)
        await session.commit()


async def ensure_demo(settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    """Seed and train the demo when the model directory has no checkpoints yet."""
    if newest_versions(settings.model_dir):
        return
    log.info("no checkpoints in %s: training demo models (once)", settings.model_dir)
    data, titles = await asyncio.to_thread(demo_data, settings.data_dir)
    await seed_database(data, titles, sessionmaker)
    await asyncio.to_thread(train_demo, data, settings.model_dir)
