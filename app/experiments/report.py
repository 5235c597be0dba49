"""The per-arm report: exposures, attributed clicks and conversions, intervals, tests."""

from __future__ import annotations

import bisect
from collections import defaultdict
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.db import repo
from app.db.tables import Event, Exposure
from app.domain import OVERRIDE, as_utc
from app.experiments.book import ExperimentState
from app.experiments.stats import two_proportion_test, wilson


@dataclass
class _ExposureIndex:
    """Exposures per user in time order, to attribute events that carry no recommendation_id."""

    by_id: dict[str, Exposure]
    times: dict[str, list[Any]]
    rows: dict[str, list[Exposure]]

    @classmethod
    def build(cls, exposures: list[Exposure]) -> _ExposureIndex:
        rows: dict[str, list[Exposure]] = defaultdict(list)
        for x in sorted(exposures, key=lambda x: as_utc(x.created_at)):
            rows[x.user_id].append(x)
        times = {user: [as_utc(x.created_at) for x in xs] for user, xs in rows.items()}
        return cls({x.recommendation_id: x for x in exposures}, times, rows)

    def attribute(self, event: Event, window: timedelta) -> Exposure | None:
        """The exposure an event counts for: its recommendation_id, else the latest exposure of
        the same user that showed the item within the window before the event."""
        if event.recommendation_id:
            return self.by_id.get(event.recommendation_id)
        moment = as_utc(event.event_time)
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
    exposures = await repo.experiment_exposures(session=session, experiment=state.name)
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
    return await repo.user_events_since(
        session=session,
        users=sorted({x.user_id for x in exposures}),
        types=("click", *conversions),
        since=min(as_utc(x.created_at) for x in exposures),
    )


def _rates(successes: int, trials: int) -> dict[str, Any]:
    low, high = wilson(successes, trials)
    return {"count": successes, "rate": successes / trials if trials else None, "ci95": [low, high]}


def _arm_rows(
    state: ExperimentState, exposures: list[Exposure], clicked: set[str], converted: set[str]
) -> list[dict[str, Any]]:
    """Exposures, clicks and conversions of each arm (and of overrides, when there were any)."""
    per_variant: dict[str, list[str]] = defaultdict(list)
    for x in exposures:
        per_variant[x.variant or OVERRIDE].append(x.recommendation_id)
    arms = []
    for name in [a.name for a in state.arms] + ([OVERRIDE] if OVERRIDE in per_variant else []):
        ids = per_variant.get(name, [])
        arms.append(
            {
                "arm": name,
                "exposures": len(ids),
                "clicks": _rates(sum(1 for i in ids if i in clicked), len(ids)),
                "conversions": _rates(sum(1 for i in ids if i in converted), len(ids)),
            }
        )
    return arms


def _summarise(
    state: ExperimentState,
    exposures: list[Exposure],
    clicked: set[str],
    converted: set[str],
    window: timedelta,
    conversions: tuple[str, ...],
) -> dict[str, Any]:
    """The report: the arms, each non-control arm tested against the first."""
    arms = _arm_rows(state, exposures, clicked, converted)
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
