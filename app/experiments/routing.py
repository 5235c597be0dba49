"""A/B assignment: hash(salt, user_id) -> a weighted arm, the same on every replica and restart."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Arm:
    """One variant of an experiment: a model name and its traffic weight."""

    name: str
    model: str
    weight: float


def bucket(salt: str, user_id: str) -> float:
    """A uniform number in [0, 1) fixed by (salt, user_id); sha256, not Python's salted hash()."""
    digest = hashlib.sha256(f"{salt}\x00{user_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def assign(arms: Sequence[Arm], salt: str, user_id: str) -> Arm:
    """The arm whose cumulative weight interval holds the user's bucket."""
    total = sum(arm.weight for arm in arms)
    point = bucket(salt, user_id) * total
    cumulative = 0.0
    for arm in arms:
        cumulative += arm.weight
        if point < cumulative:
            return arm
    return arms[-1]  # float rounding at the top edge
