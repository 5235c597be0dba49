"""A synthetic shop: a catalog and months of user sessions, seeded and deterministic.

The data has the structure real shops have, so every model family has something to learn and
none scores a trivial 1.0:
- item popularity follows a power law (categories by size and by appeal, items inside them);
- each user has a taste (two favourite categories) and an activity level (log-normal);
- a session is a walk through the catalog: the next item is often a *successor* of the last
  one (the next items in its category's order, as episodes of a series or sizes of a range:
  what sequence models pick up), else a popular item of the same category, else a jump to a
  new category the user likes (what MF picks up);
- sessions are spread over months; events inside one are seconds to minutes apart;
- types are mostly views, then clicks, carts and purchases (a purchase carries the price).

Users are generated in fixed blocks, each from its own seed (numpy SeedSequence.spawn), so a
block's events never depend on how many blocks came before: an L run streams block by block.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import numpy as np

# Preset sizes (items, users, events), as the scale issue names them.
SIZES: dict[str, tuple[int, int, int]] = {
    "S": (10_000, 100_000, 1_000_000),
    "M": (100_000, 1_000_000, 10_000_000),
    "L": (1_000_000, 2_000_000, 30_000_000),
}
USER_BLOCK = 50_000  # users generated together; fixed, so the output does not depend on memory
EVENT_TYPES = ("view", "click", "add_to_cart", "purchase")
TYPE_SHARES = (0.74, 0.14, 0.08, 0.04)
START = 1_767_225_600  # 2026-01-01T00:00:00Z: the first day of the simulated history
DAY = 86_400
ADJECTIVES = (
    "classic", "light", "compact", "deluxe", "eco", "urban", "vintage", "smart", "soft",
    "sport", "travel", "premium", "basic", "bold", "mini", "pro",
)  # fmt: skip
NOUNS = (
    "lamp", "jacket", "kettle", "backpack", "chair", "sneaker", "watch", "mug", "blanket",
    "speaker", "novel", "helmet", "scarf", "pan", "desk", "camera", "glove", "vase",
)  # fmt: skip
BRANDS = ("acme", "northwind", "globex", "initech", "umbrella", "hooli", "vandelay", "stark")


@dataclass(frozen=True)
class SynthConfig:
    """The shop's size and the shape of its behaviour."""

    items: int
    users: int
    events: int
    seed: int = 0
    days: int = 180  # length of the simulated history
    categories: int | None = None  # None: about sqrt(items) / 2, at least 4
    zipf: float = 1.0  # item popularity ~ rank^-zipf inside a category
    session_mean: float = 8.0  # mean events per session (geometric)
    p_successor: float = 0.5  # next item is one of the last item's successors
    p_same_category: float = 0.3  # ... else a popular item of the same category; else a jump

    @property
    def num_categories(self) -> int:
        """The category count: the configured one, or about sqrt(items) / 2."""
        if self.categories is not None:
            return max(1, min(self.categories, self.items))
        return max(1, min(self.items, max(4, round(self.items**0.5 / 2))))

    def check(self) -> None:
        """ValueError naming the first size that cannot work."""
        for name in ("items", "users", "events"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")
        if self.p_successor + self.p_same_category > 1:
            raise ValueError("p_successor + p_same_category must be <= 1")


@dataclass(frozen=True)
class Shop:
    """The generated catalog: items grouped by category, contiguous, with their weights."""

    category: np.ndarray  # (I,) int: item -> category; items of a category are contiguous
    start: np.ndarray  # (C,) first item of each category
    size: np.ndarray  # (C,) items per category
    cumulative: np.ndarray  # (I,) float64 cumulative item weights (for draws inside a category)
    category_weight: np.ndarray  # (C,) each category's share of all item weight
    price: np.ndarray  # (I,) float64


def make_shop(config: SynthConfig) -> Shop:
    """The catalog: power-law category sizes and appeal, Zipf items inside each category."""
    rng = np.random.default_rng([config.seed, 0])
    count = config.num_categories
    sizes = _category_sizes(rng, config.items, count)
    start = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    category = np.repeat(np.arange(count), sizes)
    local_rank = np.arange(config.items) - start[category]
    appeal = rng.pareto(1.5, count) + 1.0  # some categories sell far more than their size says
    weights = appeal[category] * (local_rank + 1.0) ** -config.zipf
    weights = weights[_shuffle_within(rng, start, sizes)]  # the popular item is not the first
    cumulative = np.cumsum(weights)
    category_weight = np.bincount(category, weights=weights, minlength=count) / weights.sum()
    price = np.round(np.exp(rng.normal(3.2, 0.9, config.items)), 2)
    return Shop(category, start, sizes, cumulative, category_weight, price)


def _category_sizes(rng: np.random.Generator, items: int, count: int) -> np.ndarray:
    """Power-law sizes summing to `items`, each at least 1."""
    raw = rng.pareto(1.2, count) + 1.0
    sizes = 1 + np.floor(raw / raw.sum() * (items - count)).astype(np.int64)
    sizes[np.argmax(sizes)] += items - sizes.sum()  # rounding leftovers to the largest
    return sizes


def _shuffle_within(rng: np.random.Generator, start: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """A permutation of the items that only moves items inside their category."""
    keys = np.repeat(np.arange(len(sizes)), sizes) + rng.random(int(sizes.sum()))
    return np.argsort(keys, kind="stable")


def catalog_rows(config: SynthConfig, shop: Shop) -> Iterator[dict[str, Any]]:
    """The catalog as JSONL-ready items: title, categories, a brand attribute, price."""
    rng = np.random.default_rng([config.seed, 1])
    adjective = rng.integers(len(ADJECTIVES), size=config.items)
    brand = rng.integers(len(BRANDS), size=config.items)
    for item in range(config.items):
        cat = int(shop.category[item])
        noun = NOUNS[cat % len(NOUNS)]
        yield {
            "item_id": item_id(item),
            "title": f"{ADJECTIVES[adjective[item]]} {noun} {item - int(shop.start[cat]) + 1}",
            "categories": [f"{noun}s/line-{cat}"],
            "attributes": {"brand": BRANDS[brand[item]]},
            "price": float(shop.price[item]),
        }


def item_id(index: int) -> str:
    """The synthetic shop's SKU for an item index."""
    return f"sku{index}"


@dataclass
class EventBlock:
    """One block of users' events, sorted by user then time."""

    user: np.ndarray  # (N,) int64 user index
    item: np.ndarray  # (N,) int64 item index
    timestamp: np.ndarray  # (N,) int64 epoch seconds
    type: np.ndarray  # (N,) int8 index into EVENT_TYPES


def event_blocks(config: SynthConfig, shop: Shop) -> Iterator[EventBlock]:
    """Every user's events, USER_BLOCK users at a time, each block from its own seed."""
    config.check()
    activity = _user_events(config)
    seeds = np.random.SeedSequence([config.seed, 2]).spawn(-(-config.users // USER_BLOCK))
    for block, seed in enumerate(seeds):
        users = np.arange(block * USER_BLOCK, min(config.users, (block + 1) * USER_BLOCK))
        counts = activity[users]
        if counts.sum():
            yield _block(config, shop, np.random.default_rng(seed), users, counts)


def _user_events(config: SynthConfig) -> np.ndarray:
    """Events per user: log-normal activity, totalling config.events (a user may have none)."""
    rng = np.random.default_rng([config.seed, 3])
    activity = rng.lognormal(0.0, 1.2, config.users)
    base = 1 if config.events >= config.users else 0  # everyone active when events allow it
    rest = config.events - base * config.users
    return base + rng.multinomial(rest, activity / activity.sum())


def _block(
    config: SynthConfig,
    shop: Shop,
    rng: np.random.Generator,
    users: np.ndarray,
    counts: np.ndarray,
) -> EventBlock:
    """One block: sessions cut from each user's events, walked, timed and typed."""
    user = np.repeat(users, counts)
    first = np.r_[True, user[1:] != user[:-1]]
    new_session = first | (rng.random(len(user)) < 1.0 / config.session_mean)
    taste = _tastes(shop, rng, len(users))[np.searchsorted(users, user)]
    item = _walk(config, shop, rng, new_session, taste)
    timestamp = _times(config, rng, user, first, new_session)
    kind = rng.choice(len(EVENT_TYPES), size=len(user), p=TYPE_SHARES).astype(np.int8)
    return EventBlock(user.astype(np.int64), item, timestamp, kind)


def _tastes(shop: Shop, rng: np.random.Generator, count: int) -> np.ndarray:
    """Two favourite categories per user, drawn by the categories' appeal: (count, 2)."""
    return rng.choice(len(shop.size), size=(count, 2), p=shop.category_weight)


def _walk(
    config: SynthConfig,
    shop: Shop,
    rng: np.random.Generator,
    new_session: np.ndarray,
    taste: np.ndarray,
) -> np.ndarray:
    """Each event's item: a session's first item from the user's taste, then one step at a time
    (successor, same category or a jump), vectorised over all sessions at the same position."""
    n = len(new_session)
    session_start = np.maximum.accumulate(np.where(new_session, np.arange(n), 0))
    position = np.arange(n) - session_start
    order = np.argsort(position, kind="stable")
    bounds = np.searchsorted(position[order], np.arange(int(position.max()) + 2))
    item = np.zeros(n, dtype=np.int64)
    for step in range(len(bounds) - 1):
        at = order[bounds[step] : bounds[step + 1]]
        item[at] = (
            _first_items(shop, rng, taste[at])
            if step == 0
            else _next_items(config, shop, rng, item[at - 1], taste[at])
        )
    return item


def _first_items(shop: Shop, rng: np.random.Generator, taste: np.ndarray) -> np.ndarray:
    """A session's opening item: a favourite category (80%) or any, then a popular item."""
    favourite = taste[np.arange(len(taste)), rng.integers(2, size=len(taste))]
    anywhere = rng.choice(len(shop.size), size=len(taste), p=shop.category_weight)
    category = np.where(rng.random(len(taste)) < 0.8, favourite, anywhere)
    return _popular_in(shop, rng, category)


def _next_items(
    config: SynthConfig,
    shop: Shop,
    rng: np.random.Generator,
    previous: np.ndarray,
    taste: np.ndarray,
) -> np.ndarray:
    """The step after `previous`: a successor, a popular item of its category, or a jump."""
    category = shop.category[previous]
    offset = previous - shop.start[category] + rng.integers(1, 3, size=len(previous))
    successor = shop.start[category] + offset % shop.size[category]
    draw = rng.random(len(previous))
    same = _popular_in(shop, rng, category)
    jump = _first_items(shop, rng, taste)
    successor_cut = config.p_successor
    same_cut = successor_cut + config.p_same_category
    return np.where(draw < successor_cut, successor, np.where(draw < same_cut, same, jump))


def _popular_in(shop: Shop, rng: np.random.Generator, category: np.ndarray) -> np.ndarray:
    """One item per entry of `category`, drawn by item weight inside that category."""
    start, end = shop.start[category], shop.start[category] + shop.size[category]
    low = np.where(start > 0, shop.cumulative[np.maximum(start - 1, 0)], 0.0)
    high = shop.cumulative[end - 1]
    target = low + rng.random(len(category)) * (high - low)
    return np.clip(np.searchsorted(shop.cumulative, target, side="right"), start, end - 1)


def _times(
    config: SynthConfig,
    rng: np.random.Generator,
    user: np.ndarray,
    first: np.ndarray,
    new_session: np.ndarray,
) -> np.ndarray:
    """Epoch seconds, increasing per user: sessions spread over about half of `days` after
    the user's first day (itself in the first half), events seconds to minutes apart."""
    starts = np.flatnonzero(first)
    sessions = np.add.reduceat(new_session.astype(np.int64), starts)  # per user
    per_event = np.repeat(sessions, np.diff(np.r_[starts, len(user)]))
    step = np.ceil(rng.exponential(45.0, len(user))).astype(np.int64)  # within a session
    mean_gap = config.days * DAY / 2 / per_event
    gap = np.ceil(rng.exponential(1.0, len(user)) * mean_gap).astype(np.int64)
    step = np.where(new_session, gap, step)  # a session opens a gap after the last one
    joined = rng.integers(0, config.days * DAY // 2, size=len(user))  # the user's first day
    step = np.where(first, joined, step)
    step = _fit_within(step, first, new_session & ~first, starts, config.days * DAY)
    total = np.cumsum(step)
    base = np.maximum.accumulate(np.where(first, total - step, 0))  # the user's running offset
    return START + (total - base)


def _fit_within(
    step: np.ndarray, first: np.ndarray, gap: np.ndarray, starts: np.ndarray, limit: int
) -> np.ndarray:
    """The steps with each user's session gaps shrunk so their history ends within `limit`
    seconds of the start: exponential gaps have a long tail, and a history must not run past
    the simulated window (into the future, which ingestion refuses)."""
    gaps = np.where(gap, step, 0)
    room = np.maximum(limit - np.add.reduceat(step - gaps, starts), 0)  # after joined + steps
    total_gap = np.add.reduceat(gaps, starts)
    factor = np.where(total_gap > room, room / np.maximum(total_gap, 1), 1.0)
    user = np.cumsum(first) - 1  # each event's user, by position
    shrunk = np.maximum(np.floor(gaps * factor[user]), 1).astype(np.int64)
    return np.where(gap, shrunk, step)


def write_shop(config: SynthConfig, out: Path, progress: Any | None = None) -> dict[str, Any]:
    """Write `events.csv` and `catalog.jsonl` under `out`; returns a summary (also summary.json)."""
    config.check()
    out.mkdir(parents=True, exist_ok=True)
    shop = make_shop(config)
    with open(out / "catalog.jsonl", "w", encoding="utf-8") as catalog:
        for row in catalog_rows(config, shop):
            catalog.write(json.dumps(row) + "\n")
    written, types = 0, np.zeros(len(EVENT_TYPES), dtype=np.int64)
    with open(out / "events.csv", "w", encoding="utf-8", newline="") as events:
        events.write("event_id,user,item,timestamp,type,value\n")
        for block in event_blocks(config, shop):
            _write_block(events, block, shop, written, config.seed)
            written += len(block.user)
            types += np.bincount(block.type, minlength=len(EVENT_TYPES))
            if progress is not None:
                progress(len(block.user))
    summary = _summary(config, written, types)
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary


def _write_block(events: TextIO, block: EventBlock, shop: Shop, first_row: int, seed: int) -> None:
    """A block as CSV lines; event ids are the seed and row number, so a reload is idempotent."""
    names = np.asarray(EVENT_TYPES)[block.type]
    values = np.where(block.type == EVENT_TYPES.index("purchase"), shop.price[block.item], np.nan)
    value_text = np.where(np.isnan(values), "", np.char.mod("%.2f", values))
    rows = np.arange(first_row, first_row + len(block.user))
    ids = np.char.mod(f"s{seed}-e%d,", rows)
    lines = np.char.add(
        np.char.add(ids, np.char.mod("u%d,", block.user)), np.char.mod("sku%d,", block.item)
    )
    lines = np.char.add(np.char.add(lines, np.char.mod("%d,", block.timestamp)), names)
    lines = np.char.add(np.char.add(lines, ","), value_text)
    events.write("\n".join(lines.tolist()) + "\n")


def _summary(config: SynthConfig, events: int, types: np.ndarray) -> dict[str, Any]:
    """What was written: the config, the event count and the type mix."""
    return {
        "config": {**config.__dict__, "categories": config.num_categories},
        "events": events,
        "types": {name: int(n) for name, n in zip(EVENT_TYPES, types, strict=True)},
    }


def first_histories(events: Path, item_ids: list[str], users: int) -> list[np.ndarray]:
    """The item indices (into `item_ids`) of the first `users` users of an events file that
    `write_shop` wrote (grouped by user, oldest first); unknown items left out, users left
    with none dropped. For probes that need real users' histories of a shop."""
    index = {item: n for n, item in enumerate(item_ids)}
    out: list[list[int]] = []
    current = None
    with events.open() as f:
        next(f)
        for line in f:
            _, user, item, *_ = line.split(",", 3)
            if user != current:
                if len(out) == users:
                    break
                current = user
                out.append([])
            if item in index:
                out[-1].append(index[item])
    return [np.asarray(h, dtype=np.int64) for h in out if h]
