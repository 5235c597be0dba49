"""Demo checkpoints for `make run`: a newcomer's first curl returns real recommendations.

With ../shared/datasets present the demo uses MovieLens 100K (seeded into the database as
events, its movies in the catalog with genres and years); without it, a small generated shop
with sequential patterns and a catalog of its own. Nothing happens when the model directory
already holds checkpoints.
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
from app.ingest.catalog import import_items, validate_catalog
from app.ingest.content import catalog_features
from app.serving.registry import newest_versions
from models.catalog import CatalogItem, load_catalog
from models.content import TextEncoder
from models.data import Interactions, LeaveOneOut, load_interactions
from models.split import build_leave_one_out
from models.train import save_trained, train_model
from models.zoo import get_model_class

log = logging.getLogger(__name__)
DEMO_MODELS: dict[str, dict[str, Any]] = {
    "popularity": {},
    "mf": {},
    "sasrec": {"max_len": 50, "epochs": 40, "patience": 3, "max_seconds": 90, "progress": False},
    "content": {},  # the catalog's text alone: new items are recommendable at once
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


# The generated shop's product kinds, one per item group, and the colours its items come in:
# items of a group share words, so a content model has something to read.
SHOP_KINDS = ("mug", "t-shirt", "notebook", "headphones", "sneakers", "backpack")
SHOP_COLOURS = ("red", "blue", "green", "black", "white")


def synthetic_catalog(items: int = 120, groups: int = 6) -> list[CatalogItem]:
    """The generated shop's catalog: sku-N is a coloured product of its group's kind, in
    category "group-G", with colour and size attributes."""
    group = items // groups
    catalog = []
    for n in range(items):
        kind = SHOP_KINDS[(n // group) % len(SHOP_KINDS)]
        colour = SHOP_COLOURS[n % len(SHOP_COLOURS)]
        catalog.append(
            CatalogItem(
                item_id=f"sku-{n}",
                title=f"{colour.capitalize()} {kind} {n}",
                categories=[f"group-{n // group}"],
                attributes={"colour": colour, "size": "SML"[n % 3]},
                price=float(5 + n % 20),
            )
        )
    return catalog


def demo_data(data_dir: Path | None) -> tuple[Interactions, list[CatalogItem]]:
    """MovieLens 100K with its movie list when available, else the generated shop."""
    u_data = data_dir / "ml-100k" / "u.data" if data_dir else None
    if u_data is None or not u_data.is_file():
        return synthetic_shop(), synthetic_catalog()
    catalog = load_catalog(u_data.parent) if (u_data.parent / "u.item").is_file() else []
    return load_interactions(u_data), catalog


def train_demo(
    split: LeaveOneOut, features: np.ndarray, encoder: str, model_dir: Path
) -> list[Path]:
    """Train each demo model and save it as model_dir/<name>/demo-<time>; `features`: the
    items' content vectors from the encoder named `encoder`, for the models that read them."""
    version = "demo-" + datetime.now(UTC).strftime("%Y%m%d%H%M%S")
    saved = []
    for name, overrides in DEMO_MODELS.items():
        content = features if get_model_class(name).reads_content else None
        trained = train_model(name, split, overrides, seed=0, refit=False, item_features=content)
        extra: dict[str, Any] = {} if content is None else {"content_encoder": encoder}
        path = model_dir / name / version
        saved.append(save_trained(trained.model, trained.report, split, path, **extra))
        val = trained.report.val.get("ndcg@10", float("nan"))
        log.info("demo model %s: val ndcg@10 %.4f", name, val)
    return saved


async def seed_database(
    data: Interactions, catalog: list[CatalogItem], sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    """Store the demo interactions as events and its catalog (once), in one transaction."""
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
        # Checked as PUT /items checks items; import_items commits the events with them.
        await import_items(session=session, items=validate_catalog(catalog), batch=1000)


async def ensure_demo(settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    """Seed and train the demo when the model directory has no checkpoints yet."""
    if newest_versions(settings.model_dir):
        return
    log.info("no checkpoints in %s: training demo models (once)", settings.model_dir)
    data, catalog = await asyncio.to_thread(demo_data, settings.data_dir)
    await seed_database(data, catalog, sessionmaker)
    split = build_leave_one_out(data, k=5)
    # Encoded once and stored: the service's content index then reuses the vectors.
    encoder = TextEncoder(settings.text_encoder)
    features = await catalog_features(sessionmaker, encoder, split.item_ids.ids)
    await asyncio.to_thread(train_demo, split, features, encoder.name, settings.model_dir)
