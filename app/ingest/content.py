"""Content vectors of catalog items: the text an item is encoded from, vectors stored by the
hash of that text (`item_embeddings`), and the encoding of texts not stored yet."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence

import numpy as np
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.db import repo
from app.db.tables import Item
from models.catalog import CatalogItem, item_text
from models.content import TextEncoder, content_hash

log = logging.getLogger(__name__)


def text_of(row: Item) -> str:
    """The text the encoder reads for a stored item ("" when it has none)."""
    item = CatalogItem(
        item_id=row.item_id,
        title=row.title,
        description=row.description,
        categories=list(row.categories or []),
        attributes=dict(row.attributes or {}),
    )
    return item_text(item)


def hashed(texts: Mapping[str, str], encoder: TextEncoder) -> dict[str, str]:
    """Item -> the hash of its text under this encoder, for the items that have text."""
    return {item: content_hash(text, encoder.name) for item, text in texts.items() if text}


async def stored_vectors(
    session: AsyncSession, encoder: TextEncoder, hashes: Sequence[str]
) -> dict[str, np.ndarray]:
    """The vectors already stored for these hashes."""
    found = await repo.item_embeddings(
        session=session, encoder=encoder.name, hashes=sorted(set(hashes))
    )
    return {h: np.frombuffer(blob, "<f4") for h, blob in found.items()}


async def encode_and_store(
    sessionmaker: async_sessionmaker[AsyncSession] | None,
    encoder: TextEncoder,
    texts: Mapping[str, str],
) -> dict[str, np.ndarray]:
    """Encode texts (hash -> text) on a worker thread and store the vectors; a failure to
    store only costs encoding them again later."""
    encoded = await asyncio.to_thread(encoder.encode, list(texts.values()))
    vectors = dict(zip(texts, encoded, strict=True))
    if sessionmaker is not None:
        blobs = {h: v.astype("<f4").tobytes() for h, v in vectors.items()}
        try:
            async with sessionmaker() as session:
                await repo.put_item_embeddings(session=session, encoder=encoder.name, vectors=blobs)
        except Exception as error:
            log.warning("storing %d item vectors failed: %s", len(blobs), error)
    return vectors


async def catalog_features(
    sessionmaker: async_sessionmaker[AsyncSession], encoder: TextEncoder, item_ids: Sequence[str]
) -> np.ndarray:
    """The content vectors of `item_ids` in order, (I, F) float32; zero rows for items without
    text. Stored vectors are reused, the rest encoded and stored (retraining's features)."""
    async with sessionmaker() as session:
        rows = await repo.catalog_since(session=session, since=None)
        wanted = set(item_ids)
        texts = {row.item_id: text_of(row) for row in rows if row.item_id in wanted}
        hashes = hashed(texts, encoder)
        vectors = await stored_vectors(session, encoder, list(hashes.values()))
    missing = {h: texts[item] for item, h in hashes.items() if h not in vectors}
    if missing:
        vectors.update(await encode_and_store(sessionmaker, encoder, missing))
    features = np.zeros((len(item_ids), encoder.dim), dtype=np.float32)
    for row, item in enumerate(item_ids):
        if item in hashes:
            features[row] = vectors[hashes[item]]
    return features
