"""DELETE /users/{id}: the user's events, exposures, cached state and checkpoint metadata go;
a receipt (hashed subject, time, counts) stays.

Order matters. Checkpoint metadata is scrubbed first (idempotent: a failed erasure can simply
be repeated). The rows and the receipt commit in one transaction. The cache is dropped after the
commit: a concurrent request that read the old rows cannot store them afterwards, because the
drop bumps the user's generation and a store with an older generation is refused. When the
cache is unreachable the drop is fenced and replayed (app.cache.fence), and the answer says
`"cache": "pending"`.

Other replicas: Redis is shared, so its drop reaches them. Replicas with an in-process cache
(no Redis) drop the subjects of new receipts on their refresh tick (`ErasureSync`), within
`RECSYS_REFRESH_INTERVAL_S`.

Models trained before an erasure keep what the user's events taught them in aggregate (item
vectors, popularity counts, EASE's item-item weights); no model stores a per-user row, so the
next retrain removes that influence. Events of an erased user that arrive late (their time at
or before the erasure) are left out of retraining (app.training.retrain).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.cache import LocalCache, SafeCache
from app.db import repo
from app.domain import as_utc
from app.errors import NotFound
from app.privacy.checkpoints import USER_IDS, scrub_checkpoints
from app.schemas.admin import Erased, ErasureReceipt
from app.serving.services import Services

log = logging.getLogger(__name__)


def subject_of(user_id: str) -> str:
    """The receipt's subject: sha256 hex of the user id (the id itself is not kept)."""
    return hashlib.sha256(user_id.encode()).hexdigest()


async def checkpoint_roots(session: AsyncSession, model_dir: Path) -> list[Path]:
    """The model directory and every registered version's directory (which may lie outside)."""
    rows = await repo.model_versions(session=session)
    return [model_dir, *(Path(row.path) for row in rows)]


def forget_user_lists(metas: Iterable[dict[str, Any]]) -> None:
    """Drop user id lists from loaded checkpoints' metadata: serving never reads them."""
    for meta in metas:
        meta.pop(USER_IDS, None)


async def erase_user(
    *,
    user_id: str,
    session: AsyncSession,
    cache: SafeCache,
    model_dir: Path,
    loaded_metas: Iterable[dict[str, Any]] = (),
) -> Erased:
    """Erase the user everywhere this service keeps them, and record a receipt."""
    roots = await checkpoint_roots(session, model_dir)
    checkpoints = await asyncio.to_thread(scrub_checkpoints, roots, user_id)
    forget_user_lists(loaded_metas)
    events, exposures = await repo.erase_user(session=session, user_id=user_id)
    counts = {"events": events, "exposures": exposures, "checkpoints": checkpoints}
    await repo.add_erasure(session=session, subject=subject_of(user_id), counts=counts)
    await session.commit()
    dropped = await cache.invalidate([user_id], cache.backend.drop_users, [user_id], history=True)
    return Erased(**counts, cache="dropped" if dropped else "pending")


async def erasure_receipt(*, user_id: str, session: AsyncSession) -> ErasureReceipt:
    """The newest receipt for the user; NotFound when they were never erased."""
    row = await repo.latest_erasure(session=session, subject=subject_of(user_id))
    if row is None:
        raise NotFound("no erasure recorded for this user")
    return ErasureReceipt(subject=row.subject, erased_at=row.erased_at, counts=row.counts)


class ErasureSync:
    """A replica's refresh-tick upkeep: replays failed cache invalidations, and drops the
    subjects of receipts written since the last tick from an in-process cache."""

    def __init__(self) -> None:
        self.after_id = 0  # the newest receipt already applied

    async def tick(self, services: Services) -> int:
        """One refresh tick of this replica; returns how many cached users were dropped."""
        forget_user_lists(model.meta for model in services.registry.models.values())
        async with services.sessionmaker() as session:
            return await self.run(services.cache, session)

    async def run(self, cache: SafeCache, session: AsyncSession) -> int:
        """Replay failed invalidations, apply new receipts; how many cached users were dropped."""
        await cache.replay_pending()
        if not isinstance(cache.backend, LocalCache):
            return 0  # Redis is shared: the erasing replica dropped (or fenced) the user
        # The first tick reads every receipt: the cache may have filled since start-up.
        rows = await repo.erasures_after(session=session, after_id=self.after_id)
        if not rows:
            return 0
        self.after_id = rows[-1].id
        return await drop_subjects(cache.backend, {row.subject for row in rows})


async def drop_subjects(backend: LocalCache, subjects: set[str]) -> int:
    """Drop the in-process cached state of every user whose hashed id is in `subjects`."""
    users = set(backend.histories) | set(backend.vectors) | set(backend.generations)
    erased = [user for user in users if subject_of(user) in subjects]
    if erased:
        await backend.drop_users(erased, history=True)
    return len(erased)


class LateEvents:
    """Which stored events an erasure covers although they were stored after it: events of an
    erased user timed at or before their erasure arrived late (a retried batch, a delayed
    queue) and are left out of training. Later events are the user's new activity."""

    def __init__(self, erased_at: dict[str, datetime]) -> None:
        self.erased_at = {subject: as_utc(moment) for subject, moment in erased_at.items()}
        self._cutoffs: dict[str, datetime | None] = {}  # user id -> erasure time, memoised

    def __bool__(self) -> bool:
        return bool(self.erased_at)

    def covers(self, user_id: str, moment: datetime) -> bool:
        """True when the event belongs to data the user had erased."""
        cutoff = self._cutoffs.get(user_id, _UNSEEN)
        if cutoff is _UNSEEN:
            cutoff = self._cutoffs[user_id] = self.erased_at.get(subject_of(user_id))
        return cutoff is not None and as_utc(moment) <= cutoff


_UNSEEN = datetime.min  # a sentinel: the user's cutoff is not memoised yet
