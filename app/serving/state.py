"""A user's cached state per model version: built from the history and the user's marks (seen
and hidden items, app.ingest.meaning), packed into one entry."""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping, Sequence, Set
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from app.cache import Lookup
from app.ingest.meaning import TYPE_BITS, Marks, RatingRule, fold_marks
from app.serving.registry import LoadedModel
from app.serving.retrieval import count
from app.serving.services import Ask, Services

# Nine int32: dim, seen, ranked, limit, ranked_over, history, hidden, repeatable, repeats.
LAYOUT = "<iiiiiiiii"
HEADER = struct.calcsize(LAYOUT)
EMPTY = np.zeros(0, dtype=np.int32)
EMPTY.flags.writeable = False


def _empty() -> np.ndarray:
    """The shared empty index array (read-only)."""
    return EMPTY


@dataclass(frozen=True)
class UserState:
    """What scoring needs about a user for one model version, cached as one blob so a warm
    request is a single cache read: the vector, the items to mask (every item the user has
    seen, however long ago, and the hidden ones), and the model's best items not masked (an
    exact top-`limit` list most requests are answered from)."""

    vector: np.ndarray  # (D,) float32
    seen: np.ndarray  # (n,) integer item indices to mask: hidden, and seen unless `repeats`
    ranked: np.ndarray  # (m,) item indices, best first, `seen` items left out
    ranked_scores: np.ndarray  # (m,) float32
    limit: int  # the list's requested length: m < limit means every unmasked item is in it
    # How many items the list was ranked over: items added to the model since (new catalog
    # items with content vectors) are scored at answer time, so the state outlives them.
    ranked_over: int
    history: np.ndarray = field(
        default_factory=_empty
    )  # the model's input (what explanations name)
    hidden: np.ndarray = field(
        default_factory=_empty
    )  # disliked or hidden items: masked even with repeats
    repeatable: np.ndarray = field(
        default_factory=_empty
    )  # with `repeats`: the seen items `seen` lets back
    repeats: bool = False  # `seen` masks only the hidden items (RECSYS_ALLOW_REPEATS)

    def pack(self) -> bytes:
        """<LAYOUT's counts: int32><vector f32 x dim><seen i32 x n><ranked i32 x m><f32 x m>
        <history, hidden, repeatable: i32 each>."""
        header = struct.pack(
            LAYOUT,
            len(self.vector),
            len(self.seen),
            len(self.ranked),
            self.limit,
            self.ranked_over,
            len(self.history),
            len(self.hidden),
            len(self.repeatable),
            int(self.repeats),
        )
        return b"".join(
            (
                header,
                self.vector.astype("<f4").tobytes(),
                self.seen.astype("<i4").tobytes(),
                self.ranked.astype("<i4").tobytes(),
                self.ranked_scores.astype("<f4").tobytes(),
                self.history.astype("<i4").tobytes(),
                self.hidden.astype("<i4").tobytes(),
                self.repeatable.astype("<i4").tobytes(),
            )
        )

    @classmethod
    def unpack(cls, blob: bytes, dim: int) -> UserState | None:
        """The state, or None when the blob does not fit this model (stale or foreign)."""
        if len(blob) < HEADER:
            return None
        d, n, m, limit, ranked_over, h, x, r, repeats = struct.unpack_from(LAYOUT, blob)
        if d != dim or len(blob) != HEADER + 4 * (d + n + 2 * m + h + x + r):
            return None
        # Views into the blob, no copies: a warm request reads only the first few ranked items.
        seen_at = HEADER + 4 * d
        ranked_at = seen_at + 4 * n
        history_at = ranked_at + 8 * m
        hidden_at = history_at + 4 * h
        return cls(
            vector=np.frombuffer(blob, "<f4", d, HEADER),
            seen=np.frombuffer(blob, "<i4", n, seen_at),
            ranked=np.frombuffer(blob, "<i4", m, ranked_at),
            ranked_scores=np.frombuffer(blob, "<f4", m, ranked_at + 4 * m),
            limit=limit,
            ranked_over=ranked_over,
            history=np.frombuffer(blob, "<i4", h, history_at),
            hidden=np.frombuffer(blob, "<i4", x, hidden_at),
            repeatable=np.frombuffer(blob, "<i4", r, hidden_at + 4 * x),
            repeats=bool(repeats),
        )

    def for_request(self, repeats: bool) -> UserState:
        """This state for a request that does (or does not) let seen items back: itself when
        its list was ranked so, else one without a list (the catalog is scored) masking what
        the request masks."""
        if repeats == self.repeats:
            return self
        seen = self.hidden if repeats else np.concatenate([self.seen, self.repeatable])
        return replace(self, seen=seen, ranked=EMPTY, ranked_scores=EMPTY.view(np.float32), limit=0)

    def answer(
        self, model: LoadedModel, blocked: Set[int], k: int
    ) -> list[tuple[str, float]] | None:
        """The top k from the ranked list without the blocked items, or None when the list runs
        out before k and does not hold every unmasked item (the caller scores the catalog)."""
        if not self.limit:
            return None  # no list for this request's mask (for_request)
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
        vector = torch.from_numpy(self.vector.copy())[None, :]  # (1, D)
        scores = model.scores(vector, self.ranked_over)[0]
        seen = set(self.seen.tolist())
        added = [
            (index, value)
            for index, value in enumerate(scores.tolist(), start=self.ranked_over)
            if index not in seen and index not in blocked
        ]
        # Sorted merge of two score-ordered lists; the added items can all rank anywhere.
        return sorted([*ranked, *added], key=lambda pair: -pair[1])


async def database_history(user_id: str, services: Services) -> list[str]:
    """The user's latest model-input events from the database, oldest first."""
    return await services.history(user_id, services.settings.history_len)


async def stored_history(ask: Ask, services: Services) -> list[str]:
    """The caller's history, else the cached list, else the database."""
    if ask.history is not None:
        return list(ask.history)
    cached = await services.cache.get_history(ask.user_id)
    return cached if cached is not None else await database_history(ask.user_id, services)


def repeats_of(ask: Ask, services: Services) -> bool:
    """Whether this request lets seen items back: its own flag, else the setting."""
    return services.settings.allow_repeats if ask.repeats is None else ask.repeats


def marks_of(bits: dict[str, int], services: Services) -> Marks:
    """Seen and hidden items of cached or folded marks, by the configured seen types."""
    return Marks.of(bits, services.settings.seen_types)


async def stored_marks(ask: Ask, services: Services) -> Marks:
    """The caller's history as seen items, else the cached marks, else the database's."""
    if ask.history is not None:
        return Marks(seen=frozenset(ask.history))
    bits = await services.cache.get_marks(ask.user_id)
    if bits is None:
        read = await services.history.read(ask.user_id, 0, history=False)
        bits = fold_marks(read.marks or [], RatingRule.of(services.settings))
    return marks_of(bits, services)


async def masked_ids(ask: Ask, services: Services, found: Found | None = None) -> list[str]:
    """Item ids the request may not answer with (popular backfill): `exclude`, the hidden
    items, and the seen ones unless repeats."""
    marks = found.marks if found is not None and found.marks is not None else None
    marks = marks or await stored_marks(ask, services)
    return [*marks.masked(repeats_of(ask, services)), *ask.exclude]


@dataclass
class Found:
    """A user's state for one model, and the history and marks it came from when it had to be
    built."""

    state: UserState | None
    history: list[str] | None = None
    marks: Marks | None = None


async def user_state(ask: Ask, model: LoadedModel, services: Services) -> Found:
    """The cached state (one cache round trip), else one built from the history and marks: the
    caller's history, the cached ones, or the database. A built state is cached unless events
    arrived meanwhile; anonymous histories are never cached. The state masks what the request
    masks (repeats or not)."""
    repeats = repeats_of(ask, services)
    if ask.history is not None:
        history = list(ask.history)
        marks = Marks(seen=frozenset(history))
        state = await encode(model, history, marks, services, times=ask.times)
        return Found(state and state.for_request(repeats), history, marks)
    seen = await services.cache.lookup(ask.user_id, model.cache_field)
    state = None if seen.vector is None else UserState.unpack(seen.vector, model.dim)
    metrics = services.metrics
    metrics.child(metrics.cache_lookups, "miss" if state is None else "hit").inc()
    if state is not None:
        return Found(state.for_request(repeats))
    history, bits, times = await missing(ask, seen, services)
    marks = marks_of(bits, services)
    state = await encode(model, history, marks, services, bits, times)
    if state is not None or (seen.history is None and history) or (seen.marks is None and bits):
        await services.cache.store(
            seen,
            None if state is None else state.pack(),
            history if seen.history is None else None,
            bits if seen.marks is None else None,
            times if seen.history is None else None,
        )
    return Found(state and state.for_request(repeats), history, marks)


async def missing(
    ask: Ask, seen: Lookup, services: Services
) -> tuple[list[str], dict[str, int], list[int] | None]:
    """The history, marks and the history's times the lookup found, the rest read from the
    database (one round trip)."""
    if seen.history is not None and seen.marks is not None:
        return seen.history, seen.marks, seen.times
    read = await services.history.read(
        ask.user_id,
        services.settings.history_len,
        history=seen.history is None,
        marks=seen.marks is None,
    )
    history = seen.history if seen.history is not None else read.history or []
    times = seen.times if seen.history is not None else read.times
    bits = (
        seen.marks
        if seen.marks is not None
        else fold_marks(read.marks or [], RatingRule.of(services.settings))
    )
    return history, bits, times


async def encode(
    model: LoadedModel,
    history: list[str],
    marks: Marks,
    services: Services,
    bits: Mapping[str, int] | None = None,
    times: Sequence[int] | None = None,
) -> UserState | None:
    """The model's vector of a history (SASRec's encoder, MF's fold-in; with the items' event
    times for a model that reads them, None: not known) and its ranked list without the masked
    items (seen and hidden; hidden only under allow_repeats); None when the model knows none of
    the history's items."""
    index = model.item_index
    indices = np.fromiter((index.get(item, -1) for item in history), np.int64, len(history))
    # Unknown items are left out; items added after training (content vectors only) are masked
    # but not encoded. `trained` selects the same items' weights and times.
    trained = (indices >= 0) & (indices < model.trained_items)
    known = indices[trained]
    if not len(known):
        return None
    weights = history_weights(history, bits, services.settings.event_weights)
    repeats = services.settings.allow_repeats
    hidden = _indices(model, marks.hidden)
    repeatable = _indices(model, marks.seen - marks.hidden) if repeats else EMPTY
    seen = hidden if repeats else _indices(model, marks.seen | marks.hidden)
    stamps = (
        np.asarray(times, dtype=np.int64)[trained]
        if times is not None and model.model.uses_times
        else None
    )
    encoded = await services.encoder.encode(
        model, known, seen.astype(np.int64), None if weights is None else weights[trained], stamps
    )
    count(services.metrics, model, encoded.from_index)
    return UserState(
        encoded.vector.numpy(),
        seen,
        encoded.ranked,
        encoded.scores,
        services.encoder.ranked_items,
        encoded.ranked_over,
        history=known.astype(np.int32),
        hidden=hidden,
        repeatable=repeatable,
        repeats=repeats,
    )


def _indices(model: LoadedModel, items: frozenset[str]) -> np.ndarray:
    """The model's indices of the items it knows (int32, sorted)."""
    return np.sort(np.asarray(model.indices(list(items)), dtype=np.int32))


def history_weights(
    history: list[str], bits: Mapping[str, int] | None, event_weights: Mapping[str, float]
) -> np.ndarray | None:
    """Each history item's event weight as training gives it (retrain merges a user's events on
    an item into one interaction with the largest weight): the largest weight among the types
    the user's marks hold for the item. None when every weight is 1 (the default: nothing to
    weigh) or the history has no marks (an anonymous one)."""
    bit_weights = [(TYPE_BITS[k], w) for k, w in event_weights.items() if k in TYPE_BITS and w > 0]
    if all(w == 1.0 for _, w in bit_weights) or not bits:
        return None
    weights = np.ones(len(history))
    for n, item in enumerate(history):
        marks = bits.get(item, 0)
        weights[n] = max((w for bit, w in bit_weights if marks & bit), default=1.0)
    return weights
