"""A/B experiments: storage, an in-memory book for the request path, and the per-arm report."""

from __future__ import annotations

import bisect
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.tables import Event, Experiment, Exposure
from app.experiments.routing import Arm
from app.experiments.stats import two_proportion_test, wilson

OVERRIDE = "override"  # the variant recorded when a request names its model explicitly


@dataclass(frozen=True)
class ExperimentState:
    """An experiment as the request path needs it."""

    name: str
    arms: tuple[Arm, ...]
    salt: str
    status: str
    updated_at: datetime | None = None

    def to_json(self) -> dict[str, Any]:
        """The API shape."""
        return {
            "name": self.name,
            "arms": [{"name": a.name, "model": a.model, "weight": a.weight} for a in self.arms],
            "salt": self.salt,
            "status": self.status,
            "updated_at": self.updated_at.isoformat() if self.updated_at else None,
        }


def _state(row: Experiment) -> ExperimentState:
    arms = tuple(Arm(a["name"], a["model"], float(a["weight"])) for a in row.arms["arms"])
    return ExperimentState(row.name, arms, row.salt, row.status, row.updated_at)


async def get_experiment(*, session: AsyncSession, name: str) -> ExperimentState | None:
    """One stored experiment."""
    row = await session.get(Experiment, name)
    return None if row is None else _state(row)


async def all_experiments(*, session: AsyncSession) -> list[ExperimentState]:
    """Every stored experiment."""
    return [_state(r) for r in (await session.execute(select(Experiment))).scalars()]


async def put_experiment(*, session: AsyncSession, state: ExperimentState) -> ExperimentState:
    """Create or replace an experiment."""
    row = await session.get(Experiment, state.name)
    if row is None:
        row = Experiment(name=state.name)
        session.add(row)
    row.arms = {
        "arms": [{"name": a.name, "model": a.model, "weight": a.weight} for a in state.arms]
    }
    row.salt, row.status, row.updated_at = state.salt, state.status, datetime.now(UTC)
    await session.commit()
    return _state(row)


@dataclass
class ExperimentBook:
    """Experiments held in memory so that assignment costs no database round trip."""

    experiments: dict[str, ExperimentState] = field(default_factory=dict)

    def running(self, name: str) -> ExperimentState | None:
        """The experiment if it is running."""
        state = self.experiments.get(name)
        return state if state is not None and state.status == "running" else None

    def put(self, state: ExperimentState) -> None:
        """Apply a change at once in this process."""
        self.experiments = {**self.experiments, state.name: state}

    async def refresh(self, session: AsyncSession) -> None:
        """Reload every experiment (other replicas' changes arrive this way)."""
        self.experiments = {s.name: s for s in await all_experiments(session=session)}


def _utc(moment: datetime) -> datetime:
    """SQLite hands back naive datetimes; everything stored is UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@dataclass
class _ExposureIndex:
    """Exposures per user in time order, to attribute events that carry no recommendation_id."""

    by_id: dict[str, Exposure]
    times: dict[str, list[datetime]]
    rows: dict[str, list[Exposure]]

    @classmethod
    def build(cls, exposures: list[Exposure]) -> _ExposureIndex:
        rows: dict[str, list[Exposure]] = defaultdict(list)
        for x in sorted(exposures, key=lambda x: _utc(x.created_at)):
            rows[x.user_id].append(x)
        times = {user: [_utc(x.created_at) for x in xs] for user, xs in rows.items()}
        return cls({x.recommendation_id: x for x in exposures}, times, rows)

    def attribute(self, event: Event, window: timedelta) -> Exposure | None:
        """The exposure an event counts for: its recommendation_id, else the latest exposure of
        the same user that showed the item within the window before the event."""
        if event.recommendation_id:
            return self.by_id.get(event.recommendation_id)
        moment = _utc(event.event_time)
        times = self.times.get(event.user_id, [])
        for n in range(bisect.bisect_right(times, moment) - 1, -1, -1):
            if moment - times[n] > window:
                break
            exposure = self.rows[event.user_id][n]
            if event.item_id in exposure.items.get("items", []):
                return exposure
        return None


async def experiment_report(
    *,
    session: AsyncSession,
    state: ExperimentState,
    window: timedelta,
    conversions: tuple[str, ...],
) -> dict[str, Any]:
    """Per arm: exposures, clicks, CTR, conversions and rates with 95% Wilson intervals."""
    exposures = list(
        (await session.execute(select(Exposure).where(Exposure.experiment == state.name))).scalars()
    )
    index = _ExposureIndex.build(exposures)
    clicked: set[str] = set()
    converted: set[str] = set()
    for event in await _candidate_events(session, exposures, conversions):
        exposure = index.attribute(event, window)
        if exposure is not None:
            (clicked if event.type == "click" else converted).add(exposure.recommendation_id)
    return _summarise(state, exposures, clicked, converted, window, conversions)


async def _candidate_events(
    session: AsyncSession, exposures: list[Exposure], conversions: tuple[str, ...]
) -> list[Event]:
    """Click and conversion events of exposed users since the first exposure."""
    if not exposures:
        return []
    first = min(_utc(x.created_at) for x in exposures)
    users = sorted({x.user_id for x in exposures})
    found: list[Event] = []
    for start in range(0, len(users), 1000):  # bounded IN lists
        query = select(Event).where(
            Event.user_id.in_(users[start : start + 1000]),
            Event.type.in_(("click", *conversions)),
            Event.event_time >= first,
        )
        found.extend((await session.execute(query)).scalars())
    return found


def _rates(successes: int, trials: int) -> dict[str, Any]:
    low, high = wilson(successes, trials)
    return {"count": successes, "rate": successes / trials if trials else None, "ci95": [low, high]}


def _summarise(
    state: ExperimentState,
    exposures: list[Exposure],
    clicked: set[str],
    converted: set[str],
    window: timedelta,
    conversions: tuple[str, ...],
) -> dict[str, Any]:
    per_variant: dict[str, list[str]] = defaultdict(list)
    for x in exposures:
        per_variant[x.variant or OVERRIDE].append(x.recommendation_id)
    arms: list[dict[str, Any]] = []
    for name in [a.name for a in state.arms] + ([OVERRIDE] if OVERRIDE in per_variant else []):
        ids = per_variant.get(name, [])
        clicks = sum(1 for i in ids if i in clicked)
        converts = sum(1 for i in ids if i in converted)
        arms.append(
            {
                "arm": name,
                "exposures": len(ids),
                "clicks": _rates(clicks, len(ids)),
                "conversions": _rates(converts, len(ids)),
            }
        )
    control = arms[0]
    for arm in arms[1 : len(state.arms)]:
        arm["vs_control"] = {
            metric: two_proportion_test(
                control[metric]["count"],
                control["exposures"],
                arm[metric]["count"],
                arm["exposures"],
            )
            for metric in ("clicks", "conversions")
        }
    return {
        "experiment": state.to_json(),
        "attribution_window_s": window.total_seconds(),
        "conversion_types": list(conversions),
        "control": control["arm"],
        "arms": arms,
    }
