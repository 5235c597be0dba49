"""Serving-side catalog state: popular items for fallback and backfill, inactive items to mask."""

from __future__ import annotations

import logging
import time

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.db import repo
from app.serving.registry import LoadedModel

log = logging.getLogger(__name__)
# The popular list's query may take at most 1/POPULAR_DUTY of the time between its runs.
POPULAR_DUTY = 20


class Catalog:
    """Popular item ids and inactive item ids, refreshed from the database in the background."""

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession] | None = None,
        *,
        popular_size: int = 2000,
        recent_events: int = 1_000_000,
        popular_every_s: float = 10.0,
        rating_negative_max: float = 2.0,
    ) -> None:
        self.popular_every_s, self._popular_due = popular_every_s, 0.0
        self.rating_negative_max = rating_negative_max
        self.sessionmaker = sessionmaker
        self.popular_size, self.recent_events = popular_size, recent_events
        self.popular: list[str] = []
        self.inactive: frozenset[str] = frozenset()
        self._masks: dict[tuple[str, int, int], frozenset[int]] = {}
        self._generation = 0

    async def refresh(self, session: AsyncSession, *, force: bool = False) -> None:
        """Reload the inactive set, and the popular items when they are due: every
        `popular_every_s` (RECSYS_REFRESH_INTERVAL_S in the service), or less often when the
        GROUP BY over the recent events is slow, so it never keeps the database busy more than
        1/POPULAR_DUTY of the time per replica (a GROUP BY over 1M events takes seconds)."""
        self.set_inactive(frozenset(await repo.inactive_item_ids(session=session)))
        if force or time.monotonic() >= self._popular_due:
            started = time.monotonic()
            popular = await repo.popular_item_ids(
                session=session,
                recent_events=self.recent_events,
                limit=self.popular_size,
                rating_negative_max=self.rating_negative_max,
            )
            self.set_popular(popular)
            took = time.monotonic() - started
            self._popular_due = time.monotonic() + max(self.popular_every_s, POPULAR_DUTY * took)

    async def refresh_now(self) -> None:
        """Refresh with the session factory given at start-up."""
        if self.sessionmaker is not None:
            async with self.sessionmaker() as session:
                await self.refresh(session, force=True)

    def set_popular(self, item_ids: list[str]) -> None:
        """Replace the popular list (most popular first)."""
        self.popular = item_ids

    def set_inactive(self, item_ids: frozenset[str]) -> None:
        """Replace the inactive set; per-model masks are rebuilt lazily."""
        if item_ids != self.inactive:
            self.inactive, self._masks = item_ids, {}
            self._generation += 1

    @property
    def generation(self) -> int:
        """Bumped by every change of the inactive set (keys of answers that filter by it)."""
        return self._generation

    def update_items(self, active: dict[str, bool]) -> None:
        """Apply a catalog upsert at once in this process (other replicas catch up on refresh)."""
        inactive = set(self.inactive)
        for item_id, is_active in active.items():
            (inactive.discard if is_active else inactive.add)(item_id)
        self.set_inactive(frozenset(inactive))

    def inactive_indices(self, model: LoadedModel) -> frozenset[int]:
        """Indices of the model's items that must not be recommended (cached per version)."""
        key = (model.cache_field, len(model.item_ids), self._generation)
        mask = self._masks.get(key)
        if mask is None:
            mask = frozenset(model.indices(sorted(self.inactive)))
            self._masks = {**self._masks, key: mask}
        return mask
