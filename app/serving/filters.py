"""Catalog filters in memory: which items match a request's categories, attributes and price.

The index holds every catalog item's categories, attributes, price and active flag (read with
the refresh, and at once from this replica's PUT /items), as posting lists: category path
prefix -> rows, (attribute, value) -> rows. A filter becomes a boolean mask over a model's
items with a few NumPy unions and one scatter, cached per (filter, model version and size,
catalog generation): a repeated filter costs a dict lookup.

Matching: categories are path prefixes ("shoes" matches "shoes/running", not "shoestring"),
several categories match any of them; several values of one attribute match any of them,
different attributes must all match; the price range is inclusive and an item without a
price matches no price range. Category paths and string values compare case-insensitively;
numbers and booleans compare by value (the query's "280" matches 280 and 280.0, "true" true).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

import numpy as np
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import repo

log = logging.getLogger(__name__)
T = TypeVar("T")


def category_key(path: str) -> str:
    """A category path as matched: case-folded, no leading or trailing slashes."""
    return path.strip("/").casefold()


def category_prefixes(path: str) -> list[str]:
    """Every prefix path a category matches under: "a/b/c" -> "a", "a/b", "a/b/c"."""
    parts = category_key(path).split("/")
    return ["/".join(parts[: n + 1]) for n in range(len(parts))]


def value_key(value: object) -> str:
    """An attribute value as matched: the query's strings meet stored numbers and booleans."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    text = str(value).strip().casefold()
    if text in ("true", "false"):
        return text
    try:  # "280" and "280.0" are the same number
        return value_key(float(text))
    except ValueError:
        return text


@dataclass(frozen=True)
class ItemFilter:
    """What a request's items must match, in a canonical (hashable) form."""

    categories: tuple[str, ...] = ()  # any of these path prefixes
    attributes: tuple[tuple[str, tuple[str, ...]], ...] = ()  # per name any value; all names
    price_min: float | None = None
    price_max: float | None = None

    @classmethod
    def of(
        cls,
        categories: Iterable[str] = (),
        attributes: Mapping[str, Iterable[object]] | None = None,
        price_min: float | None = None,
        price_max: float | None = None,
    ) -> ItemFilter | None:
        """The canonical filter; None when it constrains nothing."""
        found = cls(
            tuple(sorted({category_key(c) for c in categories})),
            tuple(
                sorted(
                    (name, tuple(sorted({value_key(v) for v in values})))
                    for name, values in (attributes or {}).items()
                )
            ),
            price_min,
            price_max,
        )
        return found if found != cls() else None


@dataclass
class Facts:
    """What filters read about one item."""

    categories: tuple[str, ...]
    attributes: dict[str, Any]
    price: float | None
    active: bool


class Postings:
    """The catalog as arrays and posting lists (built once per catalog generation)."""

    def __init__(self, facts: Mapping[str, Facts]) -> None:
        self.item_ids = sorted(facts)
        self.row = {item: n for n, item in enumerate(self.item_ids)}
        rows = [facts[item] for item in self.item_ids]
        self.price = np.array([np.nan if f.price is None else f.price for f in rows])
        self.active = np.array([f.active for f in rows], dtype=bool)
        categories: dict[str, list[int]] = {}
        attributes: dict[tuple[str, str], list[int]] = {}
        for n, fact in enumerate(rows):
            for prefix in {p for c in fact.categories for p in category_prefixes(c)}:
                categories.setdefault(prefix, []).append(n)
            for name, value in fact.attributes.items():
                attributes.setdefault((name, value_key(value)), []).append(n)
        self.categories = {
            key: np.array(rows_, dtype=np.int64) for key, rows_ in categories.items()
        }
        self.attributes = {
            key: np.array(rows_, dtype=np.int64) for key, rows_ in attributes.items()
        }

    def any_of(self, postings: Sequence[np.ndarray | None]) -> np.ndarray:
        """Rows in any of the posting lists, as a mask over the catalog."""
        mask = np.zeros(len(self.item_ids), dtype=bool)
        for rows in postings:
            if rows is not None:
                mask[rows] = True
        return mask

    def matching(self, item_filter: ItemFilter) -> np.ndarray:
        """The active catalog rows matching the filter: a mask over the catalog."""
        mask = self.active.copy()
        if item_filter.categories:
            mask &= self.any_of([self.categories.get(c) for c in item_filter.categories])
        for name, values in item_filter.attributes:
            mask &= self.any_of([self.attributes.get((name, v)) for v in values])
        with np.errstate(invalid="ignore"):  # NaN prices compare False: no price, no match
            if item_filter.price_min is not None:
                mask &= self.price >= item_filter.price_min
            if item_filter.price_max is not None:
                mask &= self.price <= item_filter.price_max
        return mask


class LRU:
    """A small least-recently-used dict: cached masks are up to one byte per item each."""

    def __init__(self, size: int) -> None:
        self.size, self.entries = size, OrderedDict[Hashable, Any]()

    def get(self, key: Hashable) -> Any:
        """The cached value (refreshed as recently used), or None."""
        found = self.entries.get(key)
        if found is not None:
            self.entries.move_to_end(key)
        return found

    def put(self, key: Hashable, value: Any) -> Any:
        """Cache a value, evicting the least recently used beyond the size; returns it."""
        self.entries[key] = value
        if len(self.entries) > self.size:
            self.entries.popitem(last=False)
        return value


class FilterIndex:
    """Every catalog item's filterable facts, and cached masks of the filters asked for."""

    def __init__(self, cache_size: int = 512) -> None:
        self._facts: dict[str, Facts] = {}
        self._since: datetime | None = None
        self._postings: Postings | None = Postings({})
        self._generation = 0
        self._cache = LRU(cache_size)

    @property
    def generation(self) -> int:
        """Bumped by every change of the facts (part of every cached mask's key)."""
        return self._generation

    @property
    def postings(self) -> Postings:
        """The posting lists of the current facts, rebuilt on first use after a change."""
        if self._postings is None:
            self._postings = Postings(self._facts)
        return self._postings

    async def refresh(self, session: AsyncSession) -> None:
        """Read the items changed since the last refresh (every item the first time)."""
        rows = await repo.catalog_since(session=session, since=self._since)
        if rows:
            self._since = max(row.updated_at for row in rows)
            self.apply(
                {
                    "item_id": row.item_id,
                    "categories": row.categories,
                    "attributes": row.attributes,
                    "price": row.price,
                    "active": row.active,
                }
                for row in rows
            )

    def apply(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """Take written catalog rows (a refresh, or this replica's PUT /items at once)."""
        changed = False
        for row in rows:
            facts = Facts(
                tuple(row.get("categories") or ()),
                dict(row.get("attributes") or {}),
                row.get("price"),
                bool(row.get("active", True)),
            )
            if self._facts.get(row["item_id"]) != facts:
                self._facts[row["item_id"]], changed = facts, True
        if changed:
            # Lazily rebuilt: a burst of upserts costs one rebuild, on the next filtered ask.
            self._postings, self._generation = None, self._generation + 1
            self._cache = LRU(self._cache.size)

    def cached(self, key: Hashable, build: Callable[[], T]) -> T:
        """A value derived from the current facts, built once per key and generation."""
        full = (key, self._generation)
        found = self._cache.get(full)
        if found is None:
            found = self._cache.put(full, build())
        return found

    def rows(self, item_filter: ItemFilter) -> np.ndarray:
        """The catalog rows matching a filter, as a mask over `postings.item_ids` (cached)."""
        return self.cached(
            ("rows", item_filter), lambda: read_only(self.postings.matching(item_filter))
        )

    def matches(self, item_id: str, item_filter: ItemFilter) -> bool:
        """Whether one item matches (an item missing from the catalog matches no filter)."""
        row = self.postings.row.get(item_id)
        return row is not None and bool(self.rows(item_filter)[row])

    def matcher(self, item_filter: ItemFilter) -> Callable[[str], bool]:
        """`matches` for many items: the filter's rows looked up once."""
        rows, row = self.rows(item_filter), self.postings.row

        def matches(item_id: str) -> bool:
            found = row.get(item_id)
            return found is not None and bool(rows[found])

        return matches

    def mask(
        self, space: Hashable | None, item_ids: Sequence[str], item_filter: ItemFilter
    ) -> np.ndarray:
        """A mask over `item_ids` (a model's items; `space` names that list, e.g. the model
        version and size) of the items matching the filter; cached, so read-only. A list
        with no stable name (space None) is matched afresh."""

        def build() -> np.ndarray:
            rows_of = self._rows_of(space, item_ids)
            mask = np.zeros(len(item_ids), dtype=bool)
            known = rows_of >= 0
            mask[known] = self.rows(item_filter)[rows_of[known]]
            return read_only(mask)

        return build() if space is None else self.cached(("mask", space, item_filter), build)

    def candidates(
        self, space: Hashable, item_ids: Sequence[str], item_filter: ItemFilter
    ) -> np.ndarray:
        """The indices of `item_ids` matching the filter, ascending (cached, read-only)."""
        return self.cached(
            ("candidates", space, item_filter),
            lambda: read_only(np.flatnonzero(self.mask(space, item_ids, item_filter))),
        )

    def _rows_of(self, space: Hashable | None, item_ids: Sequence[str]) -> np.ndarray:
        """Per item of the list, its catalog row (-1 when the catalog does not hold it)."""

        def build() -> np.ndarray:
            row = self.postings.row
            return np.fromiter((row.get(i, -1) for i in item_ids), np.int64, len(item_ids))

        return build() if space is None else self.cached(("rows_of", space), build)

    def matching_ids(self, item_filter: ItemFilter) -> list[str]:
        """Every active catalog item matching the filter, by id (cached)."""

        def build() -> list[str]:
            ids = self.postings.item_ids
            return [ids[n] for n in np.flatnonzero(self.rows(item_filter)).tolist()]

        return self.cached(("ids", item_filter), build)


def read_only(array: np.ndarray) -> np.ndarray:
    """The array, marked read-only: cached arrays are shared by every request."""
    array.flags.writeable = False
    return array
