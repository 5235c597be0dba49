"""Merchandising rules: stored in the database, held in memory per process like experiments.

Every active rule applies to every /recommend list, in rule-name order. A boost adds
log(multiplier) to the score of the items it covers (boosts of one item add up): model scores
are logits or dot products that can be negative, so a multiplier on the raw score would lower a
negative one; adding the log is monotone and is exactly a multiplier on a softmax-style score.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import repo
from app.db.tables import Rule
from app.domain import as_utc
from app.errors import NotFound
from app.schemas import RuleIn
from app.serving.filters import ItemFilter

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Boost:
    """Items matching `target` gain `bias` = log(multiplier) on their score."""

    target: ItemFilter
    bias: float


@dataclass(frozen=True)
class Pin:
    """An item at a fixed position (0-based here)."""

    item_id: str
    slot: int


@dataclass(frozen=True)
class Merchandising:
    """Every active rule, compiled: boosts and pins in rule-name order; `version` changes with
    any rule so derived arrays (per-model score biases) can be cached by it."""

    boosts: tuple[Boost, ...] = ()
    pins: tuple[Pin, ...] = ()
    version: int = 0

    def __bool__(self) -> bool:
        return bool(self.boosts or self.pins)


@dataclass(frozen=True)
class RuleState:
    """A stored rule as validated."""

    name: str
    body: RuleIn
    updated_at: datetime | None = None

    def to_json(self) -> dict[str, Any]:
        """The API shape (RuleOut)."""
        updated = self.updated_at.isoformat() if self.updated_at else None
        return {"name": self.name, **self.body.model_dump(), "updated_at": updated}

    @classmethod
    def of(cls, row: Rule) -> RuleState:
        """The state of a stored row."""
        updated = None if row.updated_at is None else as_utc(row.updated_at)  # SQLite: naive
        return cls(row.name, RuleIn.model_validate(row.body), updated)


def compile_rules(rules: list[RuleState], version: int) -> Merchandising:
    """The active rules' boosts and pins, in name order."""
    boosts: list[Boost] = []
    pins: list[Pin] = []
    for rule in sorted(rules, key=lambda r: r.name):
        if not rule.body.active:
            continue
        for boost in rule.body.boosts:
            attributes = {} if boost.attribute is None else {boost.attribute: [boost.value]}
            categories = [] if boost.category is None else [boost.category]
            target = ItemFilter.of(categories, attributes)
            if target is not None and boost.multiplier != 1.0:
                boosts.append(Boost(target, math.log(boost.multiplier)))
        pins.extend(Pin(pin.item_id, pin.position - 1) for pin in rule.body.pins)
    return Merchandising(tuple(boosts), tuple(pins), version)


@dataclass
class RuleBook:
    """Rules held in memory, so applying them costs no database round trip."""

    rules: dict[str, RuleState] = field(default_factory=dict)
    compiled: Merchandising = field(default_factory=Merchandising)
    _version: int = 0

    def _set(self, rules: dict[str, RuleState]) -> None:
        """Replace the rules and recompile them (only when they changed)."""
        if rules == self.rules and self._version:
            return
        self._version += 1
        self.rules = rules
        self.compiled = compile_rules(list(rules.values()), self._version)

    def put(self, state: RuleState) -> None:
        """Apply a change at once in this process."""
        self._set({**self.rules, state.name: state})

    def remove(self, name: str) -> None:
        """Forget a deleted rule at once in this process."""
        self._set({n: r for n, r in self.rules.items() if n != name})

    async def refresh(self, session: AsyncSession) -> None:
        """Reload every rule (other replicas' changes arrive this way)."""
        rules = {}
        for row in await repo.all_rules(session=session):
            try:
                rules[row.name] = RuleState.of(row)
            except ValidationError as error:  # one bad stored rule must not stop the others
                log.error("rule %r is not valid and does not apply: %s", row.name, error)
        self._set(rules)


async def stored_rule(*, session: AsyncSession, name: str) -> RuleState:
    """The stored rule `name`; NotFound when there is none."""
    row = await repo.get_rule(session=session, name=name)
    if row is None:
        raise NotFound(f"rule {name!r} not found")
    return RuleState.of(row)


async def stored_rules(*, session: AsyncSession) -> list[RuleState]:
    """Every stored rule, by name."""
    return [RuleState.of(row) for row in await repo.all_rules(session=session)]


async def save_rule(*, session: AsyncSession, book: RuleBook, name: str, body: RuleIn) -> RuleState:
    """Create or replace a rule; it applies in this process at once, elsewhere on refresh."""
    row = await repo.put_rule(session=session, name=name, body=body.model_dump(mode="json"))
    state = RuleState.of(row)
    book.put(state)
    return state


async def delete_rule(*, session: AsyncSession, book: RuleBook, name: str) -> RuleState:
    """Delete a rule (NotFound when there is none) and return it; it stops applying here at
    once."""
    state = await stored_rule(session=session, name=name)
    if not await repo.delete_rule(session=session, name=name):
        raise NotFound(f"rule {name!r} not found")
    book.remove(name)
    return state
