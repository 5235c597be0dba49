"""What one event says about a user and an item: the one rule serving and training share.

`polarity` is the rule: dislike and hide are negative; a rating is positive at or above
`rating_positive_min`, negative at or below `rating_negative_max` (it then acts like a dislike),
neutral in between; a rating without a value, and every other type, is positive. A neutral
rating (a 3 of 5) is a weak positive: it is model input and it counts as seen, but unlike a
positive event it does not lift an earlier dislike.

Serving keeps, per user and item, a few bits ("marks"): which positive types the user sent for
the item and whether it is hidden (a negative event not followed by a positive one). The cache
stores the bits and applies changes as (set, clear) masks, so it needs no rule of its own; the
seen set then follows `RECSYS_SEEN_TYPES` when it is read.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from app.domain import EVENT_TYPES, NEGATIVE_TYPES

POSITIVE, NEUTRAL, NEGATIVE = 1, 0, -1
# One bit per positive type (which types a user sent for the item), one for "hidden". Both fit
# in a 32-bit signed integer: Redis's Lua `bit` library works on those.
TYPE_BITS: dict[str, int] = {
    kind: 1 << n for n, kind in enumerate(EVENT_TYPES) if kind not in NEGATIVE_TYPES
}
HIDDEN = 1 << 15


@dataclass(frozen=True)
class RatingRule:
    """The rating thresholds (settings rating_positive_min and rating_negative_max)."""

    positive_min: float = 4.0
    negative_max: float = 2.0

    @classmethod
    def of(cls, settings: Any) -> RatingRule:
        """The thresholds a Settings object names."""
        return cls(settings.rating_positive_min, settings.rating_negative_max)


DEFAULT_RULE = RatingRule()


def polarity(kind: str, value: float | None, rule: RatingRule = DEFAULT_RULE) -> int:
    """POSITIVE (1), NEUTRAL (0, a middling rating) or NEGATIVE (-1) for one event."""
    if kind in NEGATIVE_TYPES:
        return NEGATIVE
    if kind == "rating" and value is not None:
        if value >= rule.positive_min:
            return POSITIVE
        if value <= rule.negative_max:
            return NEGATIVE
        return NEUTRAL
    return POSITIVE


def input_types(weights: Mapping[str, float]) -> list[str]:
    """Event types the models read as history: weight > 0, never a negative type."""
    return [kind for kind in EVENT_TYPES if weights.get(kind, 0) > 0 and kind not in NEGATIVE_TYPES]


def is_input(
    kind: str, value: float | None, weights: Mapping[str, float], rule: RatingRule = DEFAULT_RULE
) -> bool:
    """Whether a model reads this event as history: a weighted type, and not negative (a low
    rating). app/db/repo.py's PG_USER_INPUTS is this test in SQL (tests check they agree)."""
    if weights.get(kind, 0) <= 0 or kind in NEGATIVE_TYPES:
        return False
    return polarity(kind, value, rule) >= NEUTRAL


def mark_change(kind: str, value: float | None, rule: RatingRule = DEFAULT_RULE) -> tuple[int, int]:
    """The (set, clear) bits one event applies to its item's marks."""
    meaning = polarity(kind, value, rule)
    if meaning == NEGATIVE:
        return HIDDEN, 0
    if meaning == POSITIVE:
        return TYPE_BITS[kind], HIDDEN  # a positive event lifts an earlier dislike
    return TYPE_BITS[kind], 0


def apply_change(bits: int, change: tuple[int, int]) -> int:
    """An item's marks after one (set, clear) change."""
    set_bits, clear_bits = change
    return (bits & ~clear_bits) | set_bits


def fold_marks(
    events: Iterable[tuple[str, str, float | None]], rule: RatingRule = DEFAULT_RULE
) -> dict[str, int]:
    """Marks per item from (item, type, value) events in time order."""
    marks: dict[str, int] = {}
    for item, kind, value in events:
        marks[item] = apply_change(marks.get(item, 0), mark_change(kind, value, rule))
    return marks


def seen_bits(seen_types: Iterable[str]) -> int:
    """The type bits that make an item seen."""
    bits = 0
    for kind in seen_types:
        bits |= TYPE_BITS.get(kind, 0)
    return bits


@dataclass(frozen=True)
class Marks:
    """A user's items that are masked: seen ones (by the seen types) and hidden ones."""

    seen: frozenset[str] = frozenset()
    hidden: frozenset[str] = frozenset()

    @classmethod
    def of(cls, marks: Mapping[str, int], seen_types: Iterable[str]) -> Marks:
        """The seen and hidden items of cached or folded marks."""
        wanted = seen_bits(seen_types)
        return cls(
            frozenset(item for item, bits in marks.items() if bits & wanted),
            frozenset(item for item, bits in marks.items() if bits & HIDDEN),
        )

    def masked(self, repeats: bool) -> frozenset[str]:
        """What may not be recommended: the hidden items, and the seen ones unless repeats."""
        return self.hidden if repeats else self.seen | self.hidden
