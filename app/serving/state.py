"""A user's cached state per model version: built from the history, packed into one entry."""

from __future__ import annotations

import struct
from collections.abc import Iterable, Set
from dataclasses import dataclass

import numpy as np
import torch

from app.serving.registry import LoadedModel
from app.serving.services import Ask, Services

HEADER = 20  # five int32: dim, seen, ranked, limit, ranked_over


@dataclass(frozen=True)
class UserState:
    """What scoring needs about a user for one model version, cached as one blob so a warm
    request is a single cache read: the vector, the history items the model knows, and the
    model's best unseen items (an exact top-`limit` list most requests are answered from)."""

    vector: np.ndarray  # (D,) float32
    seen: np.ndarray  # (n,) integer item indices, to mask
    ranked: np.ndarray  # (m,) item indices, best first, seen items left out
    ranked_scores: np.ndarray  # (m,) float32
    limit: int  # the list's requested length: m < limit means every unseen item is in it
    # How many items the list was ranked over: items added to the model since (new catalog
    # items with content vectors) are scored at answer time, so the state outlives them.
    ranked_over: int

    def pack(self) -> bytes:
        """<dim, n, m, limit, ranked_over: int32><vector f32 x dim><seen i32 x n>
        <ranked i32 x m><f32 x m>."""
        header = struct.pack(
            "<iiiii",
            len(self.vector),
            len(self.seen),
            len(self.ranked),
            self.limit,
            self.ranked_over,
        )
        return b"".join(
            (
                header,
                self.vector.astype("<f4").tobytes(),
                self.seen.astype("<i4").tobytes(),
                self.ranked.astype("<i4").tobytes(),
                self.ranked_scores.astype("<f4").tobytes(),
            )
        )

    @classmethod
    def unpack(cls, blob: bytes, dim: int) -> UserState | None:
        """The state, or None when the blob does not fit this model (stale or foreign)."""
        if len(blob) < HEADER:
            return None
        d, n, m, limit, ranked_over = struct.unpack_from("<iiiii", blob)
        if d != dim or len(blob) != HEADER + 4 * (d + n + 2 * m):
            return None
        # Views into the blob, no copies: a warm request reads only the first few ranked items.
        seen_at = HEADER + 4 * d
        ranked_at = seen_at + 4 * n
        return cls(
            vector=np.frombuffer(blob, "<f4", d, HEADER),
            seen=np.frombuffer(blob, "<i4", n, seen_at),
            ranked=np.frombuffer(blob, "<i4", m, ranked_at),
            ranked_scores=np.frombuffer(blob, "<f4", m, ranked_at + 4 * m),
            limit=limit,
            ranked_over=ranked_over,
        )

    def answer(
        self, model: LoadedModel, blocked: Set[int], k: int
    ) -> list[tuple[str, float]] | None:
        """The top k from the ranked list without the blocked items, or None when the list runs
        out before k and does not hold every unseen item (the caller scores the catalog)."""
        out: list[tuple[str, float]] = []
        item_ids = model.item_ids
        # Only the first k + len(blocked) entries can be needed: at most len(blocked) are skipped.
        head = k + len(blocked)
        ranked: Iterable[tuple[int, float]] = zip(
            self.ranked[:head].tolist(), self.ranked_scores[:head].tolist(), strict=True
        )
        if len(item_ids) > self.ranked_over:
            ranked = self._with_added(model, ranked, blocked)
        for index, value in ranked:
            if index not in blocked:
                out.append((item_ids[index], value))
                if len(out) == k:
                    return out
        return out if len(self.ranked) < self.limit else None

    def _with_added(
        self, model: LoadedModel, ranked: Iterable[tuple[int, float]], blocked: Set[int]
    ) -> list[tuple[int, float]]:
        """The ranked list merged with the items added to the model after it was ranked."""
        scores = model.item_vectors[self.ranked_over :] @ torch.from_numpy(self.vector.copy())
        seen = set(self.seen.tolist())
        added = [
            (index, value)
            for index, value in enumerate(scores.tolist(), start=self.ranked_over)
            if index not in seen and index not in blocked
        ]
        # Sorted merge of two score-ordered lists; the added items can all rank anywhere.
        return sorted([*ranked, *added], key=lambda pair: -pair[1])


async def database_history(user_id: str, services: Services) -> list[str]:
    """The user's latest events from the database, oldest first."""
    return await services.history(user_id, services.settings.history_len)


async def stored_history(ask: Ask, services: Services) -> list[str]:
    """The caller's history, else the cached list, else the database."""
    if ask.history is not None:
        return list(ask.history)
    cached = await services.cache.get_history(ask.user_id)
    return cached if cached is not None else await database_history(ask.user_id, services)


@dataclass
class Found:
    """A user's state for one model, and the history it came from when it had to be built."""

    state: UserState | None
    history: list[str] | None = None


async def user_state(ask: Ask, model: LoadedModel, services: Services) -> Found:
    """The cached state (one cache round trip), else one built from the history: the caller's,
    the cached list, or the database. A built state is cached unless events arrived meanwhile;
    anonymous histories are never cached."""
    if ask.history is not None:
        history = list(ask.history)
        return Found(await encode(model, history, services), history)
    seen = await services.cache.lookup(ask.user_id, model.cache_field)
    state = None if seen.vector is None else UserState.unpack(seen.vector, model.dim)
    metrics = services.metrics
    metrics.child(metrics.cache_lookups, "miss" if state is None else "hit").inc()
    if state is not None:
        return Found(state)
    loaded = seen.history is None
    history = (
        seen.history if seen.history is not None else await database_history(ask.user_id, services)
    )
    state = await encode(model, history, services)
    if state is not None or (loaded and history):
        vector = None if state is None else state.pack()
        await services.cache.store(seen, vector, history if loaded else None)
    return Found(state, history)


async def encode(model: LoadedModel, history: list[str], services: Services) -> UserState | None:
    """The model's vector of a history (SASRec's encoder, MF's fold-in) and its ranked list;
    None when the model knows none of the history's items."""
    indices = np.asarray(model.indices(history), dtype=np.int64)
    # Items added after training (content vectors only) are masked but not encoded.
    known = indices[indices < model.trained_items]
    if not len(known):
        return None
    encoded = await services.encoder.encode(model, known, indices)
    return UserState(
        encoded.vector.numpy(),
        indices,
        encoded.ranked,
        encoded.scores,
        services.encoder.ranked_items,
        encoded.ranked_over,
    )
