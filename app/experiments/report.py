"""The experiment report: per-user metrics summed per arm in SQL (app/db/experiments.py), then
per-user statistics on those sums: intervals, lifts against the control, the sample-ratio check
and the guardrail."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.db import experiments as queries
from app.db.experiments import ArmSums
from app.domain import OVERRIDE
from app.experiments.book import ExperimentState
from app.experiments.stats import (
    Lift,
    Linearised,
    Moments,
    Reading,
    arm_interval,
    linearise,
    relative_lift,
    sample_ratio,
)

log = logging.getLogger(__name__)
METHODS = {
    True: "always-valid normal-mixture confidence sequence (Howard et al. 2021), mixture SPRT "
    "p-values: safe to read at any time",
    False: "fixed-horizon z-test: valid once, at a sample size fixed in advance",
}


@dataclass(frozen=True)
class ReportOptions:
    """What the report attributes and how it reads the numbers."""

    window: timedelta  # an event without a recommendation_id counts this long after a list
    conversions: tuple[str, ...]
    pre_window: timedelta  # CUPED's covariate: each user's events this long before the start
    reading: Reading
    cuped: bool
    guardrail: dict[str, Any]  # {"metric", "tolerance"} of experiments that name none


def moments(sums: ArmSums, metric: str) -> Moments:
    """One metric's sufficient statistics: a ratio per exposure (clicks, conversions) or a mean
    per user (revenue: x = 1)."""
    m = sums.metrics
    if metric == "revenue":
        x, xx, xy, xc = float(sums.n), float(sums.n), m["revenue_s"], sums.sc
    else:
        x, xx, xy, xc = sums.sx, sums.sxx, m[f"{metric}_sx"], sums.sxc
    return Moments(
        n=sums.n,
        sy=m[f"{metric}_s"],
        sx=x,
        sc=sums.sc,
        syy=m[f"{metric}_ss"],
        sxx=xx,
        scc=sums.scc,
        sxy=xy,
        syc=m[f"{metric}_sc"],
        sxc=xc,
    )


def _interval(line: Linearised | None, reading: Reading) -> list[float] | None:
    return None if line is None else list(arm_interval(line, reading))


def arm_entry(name: str, sums: ArmSums | None, reading: Reading) -> dict[str, Any]:
    """One arm's users, exposures, and each metric's value with its interval."""
    sums = sums or ArmSums(name, 0, 0, 0, 0, 0, 0, 0, 0, {})
    entry: dict[str, Any] = {"arm": name, "users": sums.n, "exposures": int(sums.sx)}
    for metric in ("clicks", "conversions"):
        count = sums.metrics.get(f"{metric}_s", 0.0)
        line = linearise(moments(sums, metric)) if sums.n else None
        entry[metric] = {
            "count": int(count),
            "rate": count / sums.sx if sums.sx else None,
            "ci95": _interval(line, reading),
        }
    total = sums.metrics.get("revenue_s", 0.0)
    line = linearise(moments(sums, "revenue")) if sums.n else None
    entry["revenue"] = {
        "total": total,
        "mean": total / sums.n if sums.n else None,
        "ci95": _interval(line, reading),
    }
    return entry


def versus_control(
    control: ArmSums | None, arm: ArmSums | None, reading: Reading, cuped: bool
) -> dict[str, Any]:
    """Each metric's relative lift of `arm` over `control` (None where undefined)."""
    found: dict[str, Any] = {}
    for metric in ("clicks", "conversions", "revenue"):
        a = linearise(moments(control, metric)) if control else None
        b = linearise(moments(arm, metric)) if arm else None
        lift = None if a is None or b is None else relative_lift(a, b, reading, cuped=cuped)
        found[metric] = None if lift is None else _lift_json(lift)
    return found


def _lift_json(lift: Lift) -> dict[str, Any]:
    """A lift as the report answers it."""
    return {
        "lift": lift.lift,
        "ci95": [lift.low, lift.high],
        "p_value": lift.p_value,
        "difference": lift.difference,
        "variance_reduction": lift.variance_reduction,
    }


async def experiment_report(
    *, session: AsyncSession, state: ExperimentState, options: ReportOptions
) -> dict[str, Any]:
    """The whole report of one experiment."""
    sums = await queries.arm_sums(
        session=session,
        experiment=state.name,
        window_s=options.window.total_seconds(),
        conversions=options.conversions,
        started_at=state.started_at,
        pre_window_s=options.pre_window.total_seconds(),
    )
    by_arm = {row.arm: row for row in sums}
    names = [a.name for a in state.arms] + ([OVERRIDE] if OVERRIDE in by_arm else [])
    arms = [arm_entry(name, by_arm.get(name), options.reading) for name in names]
    control = state.arms[0].name
    for entry in arms[1 : len(state.arms)]:
        entry["vs_control"] = versus_control(
            by_arm.get(control), by_arm.get(entry["arm"]), options.reading, options.cuped
        )
    guardrail = state.guardrail or options.guardrail
    await _guardrails(session, state.name, arms, by_arm, guardrail)
    srm = sample_ratio(
        [by_arm[a.name].n if a.name in by_arm else 0 for a in state.arms],
        [a.weight for a in state.arms],
    )
    return {
        "experiment": state.to_json(),
        "attribution_window_s": options.window.total_seconds(),
        "conversion_types": list(options.conversions),
        "control": control,
        "analysis": _analysis(options),
        "srm": srm,
        "guardrail": guardrail,
        "warnings": _warnings(state, srm, arms),
        "arms": arms,
    }


def _analysis(options: ReportOptions) -> dict[str, Any]:
    """How the numbers were computed, for the reader."""
    days = options.pre_window.total_seconds() / 86400
    return {
        "unit": "user",
        "sequential": options.reading.sequential,
        "method": METHODS[options.reading.sequential],
        "alpha": options.reading.alpha,
        "tuning_users": int(options.reading.tuning),
        "cuped": options.cuped,
        "covariate": f"each user's events in the {days:g} days before started_at",
    }


async def _guardrails(
    session: AsyncSession,
    experiment: str,
    arms: list[dict[str, Any]],
    by_arm: dict[str, ArmSums],
    guardrail: dict[str, Any],
) -> None:
    """Each arm's guardrail value, flagged when worse than the control's beyond tolerance."""
    metric = guardrail["metric"]
    for entry in arms:
        sums = by_arm.get(entry["arm"])
        value = None
        if sums is not None and metric == "fallback_rate":
            value = sums.fallbacks / sums.sx if sums.sx else None
        elif sums is not None:
            value = await queries.latency_quantile(
                session=session, experiment=experiment, arm=entry["arm"], timed=sums.timed
            )
        entry["guardrail"] = {"metric": metric, "value": value, "worse": False}
    base = arms[0]["guardrail"]["value"]
    for entry in arms[1:]:
        value = entry["guardrail"]["value"]
        if base is not None and value is not None:
            entry["guardrail"]["worse"] = value > base * (1 + guardrail["tolerance"])


def _warnings(state: ExperimentState, srm: dict[str, Any], arms: list[dict[str, Any]]) -> list[str]:
    """What a reader must not miss: a broken split, a guardrail breach (also logged)."""
    found = []
    if not srm["ok"]:
        users = {entry["arm"]: entry["users"] for entry in arms[: len(state.arms)]}
        weights = {a.name: a.weight for a in state.arms}
        found.append(
            f"SAMPLE RATIO MISMATCH: users per arm {users} do not fit the weights {weights} "
            f"(p = {srm['p_value']:.2g}); the split is broken, do not trust the comparisons"
        )
    for entry in arms[1 : len(state.arms)]:
        if entry["guardrail"]["worse"]:
            found.append(
                f"guardrail: arm {entry['arm']!r} has {entry['guardrail']['metric']} "
                f"{entry['guardrail']['value']:.4g}, worse than the control's "
                f"{arms[0]['guardrail']['value']:.4g} beyond the tolerance"
            )
    for warning in found:
        log.warning("experiment %s: %s", state.name, warning)
    return found
