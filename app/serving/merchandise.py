"""Filters, boosts and pins inside ranking, for the /recommend flow (app.serving.recommend).

A shaped list is exact: the model's best matching items by boosted score, from the user's
cached ranked list when enough of it matches and no item outside it could outrank (its last
score plus the largest boost is below the k-th), else by scoring the items the filter allows.
Popular matching items complete the list, then any matching item, so k items come back
whenever k active unseen items match. Pinned items then take their positions.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Hashable, Iterable, Set
from dataclasses import dataclass

import numpy as np
import torch

from app.serving.filters import FilterIndex, ItemFilter
from app.serving.registry import LoadedModel
from app.serving.rules import Merchandising, Pin
from app.serving.services import Ask, Services
from app.serving.state import UserState, stored_history

Items = list[tuple[str, float]]


def shape_of(ask: Ask, model: LoadedModel, services: Services) -> Shape | None:
    """The request's filter and the active rules for one model; None when neither applies."""
    rules = services.rules.compiled
    if ask.filter is None and not rules:
        return None
    return Shape(model, services, ask.filter, rules)


def best(scores: np.ndarray, k: int) -> np.ndarray:
    """Positions of the k highest scores, highest first (ties: lower position first)."""
    if k < len(scores):
        top = np.argpartition(-scores, k - 1)[:k]
        return top[np.lexsort((top, -scores[top]))]
    return np.lexsort((np.arange(len(scores)), -scores))


@dataclass
class Shape:
    """One request's filter and the active rules, applied to one model's ranking."""

    model: LoadedModel
    services: Services
    item_filter: ItemFilter | None
    rules: Merchandising

    @property
    def filters(self) -> FilterIndex:
        """The catalog's filter index."""
        return self.services.filters

    @property
    def space(self) -> Hashable:
        """Names the model's item list in cache keys (version, and size: items get added)."""
        return (self.model.cache_field, len(self.model.item_ids))

    def allowed(self) -> np.ndarray | None:
        """Mask over the model's items that the filter allows (None: every item)."""
        if self.item_filter is None:
            return None
        return self.filters.mask(self.space, self.model.item_ids, self.item_filter)

    def bias(self) -> tuple[np.ndarray, float] | None:
        """Per model item, the sum of its boosts' log multipliers, and the largest (cached)."""
        if not self.rules.boosts:
            return None
        ids = self.model.item_ids

        def build() -> tuple[np.ndarray, float]:
            bias = np.zeros(len(ids))
            for boost in self.rules.boosts:
                bias += boost.bias * self.filters.mask(self.space, ids, boost.target)
            return bias, float(bias.max(initial=0.0))

        return self.filters.cached(("bias", self.space, self.rules.version), build)

    def top_k(
        self, state: UserState, excluded: list[int], inactive: frozenset[int], k: int
    ) -> Items:
        """The model's best k allowed items by boosted score, seen and blocked items left out."""
        blocked = inactive.union(excluded) if excluded else inactive
        found = self._from_ranked(state, blocked, k)
        return found if found is not None else self._from_catalog(state, blocked, k)

    def _from_ranked(self, state: UserState, blocked: Set[int], k: int) -> Items | None:
        """From the cached ranked list, or None when it cannot be shown to hold the answer."""
        if len(self.model.item_ids) > state.ranked_over or not len(state.ranked):
            return None  # items were added since it was ranked: score them all
        ranked = state.ranked.astype(np.int64)
        scores = state.ranked_scores.astype(np.float64)
        keep = np.fromiter((i not in blocked for i in ranked.tolist()), bool, len(ranked))
        allowed, bias = self.allowed(), self.bias()
        if allowed is not None:
            keep &= allowed[ranked]
        ranked, scores = ranked[keep], scores[keep]
        complete = len(state.ranked) < state.limit  # every unseen item is in the list
        bound = float(state.ranked_scores[-1])  # no item outside the list scores above
        if bias is not None:
            scores = scores + bias[0][ranked]
            bound += bias[1]
            order = best(scores, len(scores))
            ranked, scores = ranked[order], scores[order]
        if len(ranked) >= k and (complete or bias is None or scores[k - 1] >= bound):
            return self._named(ranked[:k], scores[:k])
        return self._named(ranked, scores) if complete else None

    def _from_catalog(self, state: UserState, blocked: Set[int], k: int) -> Items:
        """Score the allowed items (all of them without a filter) and take the best k."""
        ids, vectors = self.model.item_ids, self.model.item_vectors
        allowed = self.allowed()
        candidates = (
            np.arange(len(ids))
            if allowed is None
            else self.filters.candidates(self.space, ids, self.item_filter)  # type: ignore[arg-type]
        )
        skip = np.concatenate([state.seen, np.fromiter(blocked, np.int64, len(blocked))])
        candidates = candidates[~np.isin(candidates, skip)]
        if not len(candidates):
            return []
        vector = torch.from_numpy(state.vector.copy())  # (D,)
        if len(candidates) * 4 > len(ids) or not self.model.dot_scored:  # score all, then pick
            scores = self.model.scores(vector[None, :])[0].numpy()[candidates].astype(np.float64)
        else:  # a narrow one: only the allowed rows
            scores = (vectors[torch.from_numpy(candidates)] @ vector).numpy().astype(np.float64)
        bias = self.bias()
        if bias is not None:
            scores += bias[0][candidates]
        top = best(scores, k)
        return self._named(candidates[top], scores[top])

    def _named(self, indices: np.ndarray, scores: np.ndarray) -> Items:
        """(item id, score) pairs."""
        ids = self.model.item_ids
        return [(ids[i], float(s)) for i, s in zip(indices.tolist(), scores.tolist(), strict=True)]

    async def pin(
        self, items: Items, ask: Ask, state: UserState | None, history: list[str] | None
    ) -> Items:
        """The list with the rules' pinned items at their positions (when active, allowed and
        unseen); a pinned item's score ties its neighbour's, so the list stays in score order."""
        if not self.rules.pins:
            return items
        pins = await self._valid_pins(ask, state, history)
        if not pins:
            return items
        pinned = {pin.item_id for pin in pins}
        rest = iter([pair for pair in items if pair[0] not in pinned])
        size = min(ask.k, len(items) - sum(pair[0] in pinned for pair in items) + len(pins))
        slots: list[str | None] = [None] * size
        for pin in pins:
            free = [n for n in range(size) if slots[n] is None]
            if free:
                slot = next((n for n in free if n >= min(pin.slot, size - 1)), free[-1])
                slots[slot] = pin.item_id
        out: list[tuple[str, float | None]] = [
            next(rest) if item is None else (item, None) for item in slots
        ]
        return self._tied(out)

    @staticmethod
    def _tied(items: list[tuple[str, float | None]]) -> Items:
        """Pinned items (score None) take the score above them, else below, else 0."""
        out: Items = []
        for n, (item, score) in enumerate(items):
            if score is None:
                below = next((s for _, s in items[n + 1 :] if s is not None), None)
                score = out[-1][1] if out else below if below is not None else 0.0
            out.append((item, score))
        return out

    async def _valid_pins(
        self, ask: Ask, state: UserState | None, history: list[str] | None
    ) -> list[Pin]:
        """The pins within k whose item is known, active, allowed and not seen (first pin of
        an item wins)."""
        model, filters, catalog = self.model, self.filters, self.services.catalog
        candidates = [
            pin
            for pin in self.rules.pins
            if pin.slot < ask.k
            and (pin.item_id in model.item_index or pin.item_id in filters.postings.row)
            and pin.item_id not in catalog.inactive
            and (self.item_filter is None or filters.matches(pin.item_id, self.item_filter))
        ]
        if not candidates:
            return []
        seen = set(ask.exclude)
        if state is not None:
            seen.update(model.item_ids[i] for i in state.seen.tolist())
        if state is None or any(pin.item_id not in model.item_index for pin in candidates):
            seen.update(
                history if history is not None else await stored_history(ask, self.services)
            )
        out: dict[str, Pin] = {}
        for pin in candidates:
            if pin.item_id not in seen and pin.item_id not in out:
                out[pin.item_id] = pin
        return list(out.values())


def popular_fill(
    services: Services,
    item_filter: ItemFilter | None,
    rules: Merchandising,
    chosen: list[str],
    blocked: Iterable[str],
    k: int,
) -> list[str]:
    """Items to complete a list of k: popular allowed ones (reordered by boosts: a boost
    multiplies an item's popularity, read as 1 / rank), then any allowed item. Needs no model:
    the day-one answer is this alone."""
    need = k - len(chosen)
    if need <= 0:
        return []
    catalog, filters = services.catalog, services.filters
    skip = set(chosen) | set(blocked) | catalog.inactive
    allows = (lambda _: True) if item_filter is None else filters.matcher(item_filter)
    popular = (item for item in catalog.popular if item not in skip and allows(item))
    if rules.boosts:  # every allowed popular item may move up

        def bias_of(item_id: str) -> float:
            """The sum of an item's boosts by its catalog facts."""
            return sum(b.bias for b in rules.boosts if filters.matches(item_id, b.target))

        bias = [(item, bias_of(item)) for item in popular]
        ranks = {item: rank for rank, item in enumerate(catalog.popular)}
        bias.sort(key=lambda pair: math.log1p(ranks[pair[0]]) - pair[1])
        popular = (item for item, _ in bias)
    extra = list(itertools.islice(popular, need))
    if len(extra) < need and item_filter is not None:
        skip.update(extra)
        rest = (i for i in filters.matching_ids(item_filter) if i not in skip)
        extra += itertools.islice(rest, need - len(extra))
    return extra
