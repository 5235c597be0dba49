"""The experiment report's queries: per-user metrics aggregated to per-arm sums in the database."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import DateTime, bindparam, text
from sqlalchemy.ext.asyncio import AsyncSession

from app.domain import OVERRIDE

# The metrics counted per user; `clicks` and `conversions` count exposures with at least one
# attributed event of the kind, `revenue` sums attributed purchases' value.
METRICS = ("clicks", "conversions", "revenue")

# Attribution as the old Python report did it: an event's recommendation_id names its exposure;
# an event without one counts for the latest exposure of the same user that showed the item at
# most `window_s` before it. {recent} and {shown} are the dialect's time and JSON tests. The
# exposures table is read once for the per-user counts; only the (few) candidate events are
# joined back to their users' exposures.
_PER_USER = """
WITH users AS (
  SELECT user_id, COALESCE(variant, :override) AS arm, count(*) AS exposures,
         count(latency_ms) AS timed, sum(CASE WHEN fallback IS NULL THEN 0 ELSE 1 END) AS fallbacks,
         min(created_at) AS first_seen
  FROM exposures WHERE experiment = :experiment
  GROUP BY user_id, COALESCE(variant, :override)
),
e AS (
  SELECT id, user_id, item_id, type, value, event_time, recommendation_id FROM events
  WHERE type IN :types AND event_time >= (SELECT min(first_seen) FROM users)
),
hits AS (
  SELECT type, value, recommendation_id, user_id, arm FROM (
    SELECT e.type, e.value, x.recommendation_id, x.user_id,
           COALESCE(x.variant, :override) AS arm,
           row_number() OVER (PARTITION BY e.id ORDER BY x.created_at DESC, x.recommendation_id)
             AS rank
    FROM e JOIN exposures x ON x.user_id = e.user_id
    WHERE x.experiment = :experiment AND (
      x.recommendation_id = e.recommendation_id
      OR (e.recommendation_id IS NULL AND x.created_at <= e.event_time AND {recent} AND {shown}))
  ) matched
  WHERE rank = 1
),
per_exposure AS (
  SELECT user_id, arm,
         max(CASE WHEN type = 'click' THEN 1 ELSE 0 END) AS clicked,
         max(CASE WHEN type IN :conversions THEN 1 ELSE 0 END) AS converted,
         sum(CASE WHEN type = 'purchase' THEN COALESCE(value, 0) ELSE 0 END) AS revenue
  FROM hits GROUP BY recommendation_id, user_id, arm
),
outcomes AS (
  SELECT user_id, arm, sum(clicked) AS clicks, sum(converted) AS conversions,
         sum(revenue) AS revenue
  FROM per_exposure GROUP BY user_id, arm
),
pre AS (
  SELECT user_id, count(*) AS activity FROM events
  WHERE event_time >= :pre_start AND event_time < :started
  GROUP BY user_id
),
u AS (
  SELECT users.arm, users.exposures, users.timed, users.fallbacks,
         COALESCE(o.clicks, 0) AS clicks, COALESCE(o.conversions, 0) AS conversions,
         COALESCE(o.revenue, 0.0) AS revenue, COALESCE(pre.activity, 0) AS c
  FROM users
  LEFT JOIN outcomes o ON o.user_id = users.user_id AND o.arm = users.arm
  LEFT JOIN pre ON pre.user_id = users.user_id
)
"""
_ARM_SUMS = """
SELECT arm, count(*) AS n, sum(exposures) AS sx, sum(exposures * exposures) AS sxx,
       sum(c) AS sc, sum(c * c) AS scc, sum(exposures * c) AS sxc,
       sum(timed) AS timed, sum(fallbacks) AS fallbacks,
       {metric_sums}
FROM u GROUP BY arm
"""
_METRIC_SUMS = (
    "sum({m}) AS {m}_s, sum({m} * {m}) AS {m}_ss, sum({m} * exposures) AS {m}_sx, "
    "sum({m} * c) AS {m}_sc"
)
_DIALECT = {
    "postgresql": (
        "x.created_at >= e.event_time - :window_s * interval '1 second'",
        "(x.items -> 'items')::jsonb @> to_jsonb(e.item_id::text)",
    ),
    "sqlite": (
        "julianday(x.created_at) >= julianday(e.event_time) - :window_s / 86400.0",
        "EXISTS (SELECT 1 FROM json_each(x.items, '$.items') j WHERE j.value = e.item_id)",
    ),
}
# The guardrail's p99: the exposure at rank ceil(0.99 n) by latency, the same on both backends;
# counted from the slow end, so the database keeps a heap of 1% of the rows instead of sorting.
_LATENCY_AT_RANK = """
SELECT latency_ms FROM exposures
WHERE experiment = :experiment AND COALESCE(variant, :override) = :arm AND latency_ms IS NOT NULL
ORDER BY latency_ms DESC LIMIT 1 OFFSET :offset
"""


@dataclass(frozen=True)
class ArmSums:
    """One arm's per-user sums: users `n`, exposures `x`, covariate `c`, and each metric's sum,
    sum of squares and cross-products with x and c (keys like "clicks_s", "clicks_sx")."""

    arm: str
    n: int
    sx: float
    sxx: float
    sc: float
    scc: float
    sxc: float
    timed: int
    fallbacks: int
    metrics: dict[str, float]


def _per_arm_query(dialect: str) -> str:
    """The whole per-user -> per-arm statement for one dialect."""
    recent, shown = _DIALECT["postgresql" if dialect == "postgresql" else "sqlite"]
    sums = ",\n       ".join(_METRIC_SUMS.format(m=m) for m in METRICS)
    return _PER_USER.format(recent=recent, shown=shown) + _ARM_SUMS.format(metric_sums=sums)


async def arm_sums(
    *,
    session: AsyncSession,
    experiment: str,
    window_s: float,
    conversions: Sequence[str],
    started_at: datetime | None,
    pre_window_s: float,
) -> list[ArmSums]:
    """Per arm (overrides as OVERRIDE): the sums of each user's exposures, attributed clicks,
    conversions, revenue and pre-`started_at` activity, computed in one statement."""
    started = started_at or datetime(1970, 1, 1, tzinfo=UTC)  # no start: an empty pre-period
    pre_start = started - timedelta(seconds=pre_window_s)
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        # The statement's cost estimate turns JIT on, whose compilation alone took 4 s of the
        # 1M-exposure report (bench/ab_sim.py); the plan is hash joins that gain nothing by it.
        await session.execute(text("SET LOCAL jit = off"))
    query = text(_per_arm_query(dialect)).bindparams(
        bindparam("types", expanding=True),
        bindparam("conversions", expanding=True),
        bindparam("started", type_=DateTime(timezone=True)),
        bindparam("pre_start", type_=DateTime(timezone=True)),
    )
    params = {
        "experiment": experiment,
        "override": OVERRIDE,
        "types": sorted({"click", "purchase", *conversions}),
        "conversions": list(conversions) or ["-"],  # an empty IN list is not portable SQL
        "window_s": float(window_s),
        "started": started,
        "pre_start": pre_start,
    }
    return [_arm_row(row._mapping) for row in await session.execute(query, params)]


def _arm_row(row: Mapping[Any, Any]) -> ArmSums:
    """A result row as ArmSums (Postgres sums of integers arrive as Decimal)."""
    values = {key: float(value or 0) for key, value in row.items() if key != "arm"}
    return ArmSums(
        arm=str(row["arm"]),
        n=int(values["n"]),
        sx=values["sx"],
        sxx=values["sxx"],
        sc=values["sc"],
        scc=values["scc"],
        sxc=values["sxc"],
        timed=int(values["timed"]),
        fallbacks=int(values["fallbacks"]),
        metrics={key: v for key, v in values.items() if key.split("_")[0] in METRICS},
    )


async def latency_quantile(
    *, session: AsyncSession, experiment: str, arm: str, timed: int, quantile: float = 0.99
) -> float | None:
    """The `quantile` of the arm's logged latencies (nearest rank); None when none is logged."""
    if timed <= 0:
        return None
    rank = max(math.ceil(quantile * timed), 1)  # 1-based, from the fastest
    offset = timed - rank  # 0-based, from the slowest
    params = {"experiment": experiment, "override": OVERRIDE, "arm": arm, "offset": offset}
    found = (await session.execute(text(_LATENCY_AT_RANK), params)).scalar()
    return None if found is None else float(found)
