"""The catalog's content vectors in memory: every item with text, for similar items and for
the content-reading models' new items.

A refresh reads the items written since the last one and takes the vectors stored for their
text (app.ingest.content); the texts not stored yet are encoded in a background task, in
batches on a worker thread, with the pretrained encoder (loaded on first use), so an item whose
content did not change is never encoded again, by this replica or any other.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime

import numpy as np
import torch
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.db import repo
from app.ingest.content import encode_and_store, hashed, stored_vectors, text_of
from app.serving.scoring import nearest
from models.content import TextEncoder

log = logging.getLogger(__name__)


def _encoder(path: str | None) -> TextEncoder | None:
    """The configured encoder; a bad setting turns content vectors off instead of the service."""
    try:
        return TextEncoder(path)
    except ValueError as error:
        log.error("content vectors are off: %s", error)
        return None


class ContentIndex:
    """Item id -> content vector (unit length), for the items whose text is encoded."""

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession] | None,
        *,
        encoder: str | None = None,
        enabled: bool = True,
        batch: int = 256,
    ) -> None:
        self.sessionmaker, self.batch = sessionmaker, batch
        self.encoder = _encoder(encoder) if enabled else None  # loads its weights on first use
        self.enabled = self.encoder is not None
        self.version = None if self.encoder is None else self.encoder.name
        self.item_ids: list[str] = []
        self.item_index: dict[str, int] = {}
        self.vectors = torch.zeros(0, 0)  # (N, F)
        self._hashes: dict[str, str] = {}  # item -> hash of the text its vector came from
        self._pending: dict[str, str] = {}  # hash -> text still to encode
        self._since: datetime | None = None
        self._task: asyncio.Task[None] | None = None

    async def refresh(self, session: AsyncSession) -> None:
        """Read the items changed since the last refresh; new texts are encoded meanwhile."""
        if self.encoder is None:
            return
        rows = await repo.catalog_since(session=session, since=self._since)
        if not rows:
            return
        self._since = max(row.updated_at for row in rows)
        texts = {row.item_id: text_of(row) for row in rows}
        self._drop([item for item, text in texts.items() if not text])
        hashes = hashed(texts, self.encoder)
        stored = await stored_vectors(session, self.encoder, list(hashes.values()))
        self._hashes.update(hashes)
        self._pending.update({h: texts[item] for item, h in hashes.items() if h not in stored})
        self._merge(stored)
        if self._pending and (self._task is None or self._task.done()):
            self._task = asyncio.create_task(self._encode_pending(), name="encode-catalog")

    def _drop(self, item_ids: list[str]) -> None:
        """Forget the vectors of items whose text is now empty."""
        gone = [item for item in item_ids if item in self._hashes]
        for item in gone:
            del self._hashes[item]
        if any(item in self.item_index for item in gone):
            keep = [item for item in self.item_ids if item in self._hashes]
            self.vectors = self.features_of(keep) if keep else torch.zeros(0, 0)
            self.item_ids, self.item_index = keep, {item: n for n, item in enumerate(keep)}

    def _merge(self, by_hash: dict[str, np.ndarray]) -> None:
        """Rebuild the matrix with every item whose current text has a vector."""
        old = {item: self.vectors[n].numpy() for item, n in self.item_index.items()}
        fresh = {item: by_hash[h] for item, h in self._hashes.items() if h in by_hash}
        merged = {**old, **fresh}
        if not merged:
            return
        item_ids = sorted(merged)
        self.vectors = torch.from_numpy(np.stack([merged[i] for i in item_ids])).float()
        self.item_ids, self.item_index = item_ids, {item: n for n, item in enumerate(item_ids)}

    async def _encode_pending(self) -> None:
        """Encode the queued texts in batches, store and apply them."""
        assert self.encoder is not None  # nothing is queued without one
        while self._pending:
            batch = dict(list(self._pending.items())[: self.batch])
            try:
                vectors = await encode_and_store(self.sessionmaker, self.encoder, batch)
            except Exception:
                log.exception("encoding %d item texts failed", len(batch))
                return
            for content in batch:
                self._pending.pop(content, None)
            self._merge(vectors)

    @property
    def pending(self) -> int:
        """Texts waiting for the encoder."""
        return len(self._pending)

    async def settled(self) -> None:
        """Wait until the queued texts are encoded (tests, and a start-up that wants them)."""
        while self._task is not None and not self._task.done():
            await asyncio.shield(self._task)

    def features_of(self, item_ids: list[str]) -> torch.Tensor:
        """The content vectors of items in the index: (N, F)."""
        return self.vectors[[self.item_index[i] for i in item_ids]]

    def similar(self, item_id: str, k: int, inactive: frozenset[str]) -> list[tuple[str, float]]:
        """The k items of highest cosine with `item_id`'s content, inactive ones left out."""
        blocked = np.fromiter(
            (self.item_index[i] for i in inactive if i in self.item_index), dtype=np.int64
        )
        return nearest(self.item_ids, self.vectors, self.item_index[item_id], blocked, k)

    async def close(self) -> None:
        """Stop encoding."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
