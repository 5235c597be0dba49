"""Experiment flows the API calls: read, create or replace, report."""

from __future__ import annotations

from collections.abc import Collection
from datetime import timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.db import repo
from app.errors import Conflict, NotFound
from app.experiments.book import ExperimentBook, ExperimentState
from app.experiments.report import ReportOptions, experiment_report
from app.experiments.routing import Arm
from app.experiments.stats import Reading
from app.schemas import ExperimentIn


async def stored_experiment(*, session: AsyncSession, name: str) -> ExperimentState:
    """The stored experiment `name`; NotFound when there is none."""
    row = await repo.get_experiment(session=session, name=name)
    if row is None:
        raise NotFound(f"experiment {name!r} not found")
    return ExperimentState.of(row)


async def save_experiment(
    *,
    session: AsyncSession,
    book: ExperimentBook,
    loaded: Collection[str],
    name: str,
    body: ExperimentIn,
) -> ExperimentState:
    """Store an experiment whose arms name loaded models; it routes in this process at once."""
    missing = sorted({a.model for a in body.arms} - set(loaded))
    if missing:
        raise Conflict(f"arms name models that are not loaded: {missing}", loc=("body", "arms"))
    arms = tuple(Arm(a.name, a.model, a.weight) for a in body.arms)
    state = ExperimentState(name, arms, body.salt or name, body.status)
    row = await repo.put_experiment(
        session=session,
        name=name,
        arms=state.arms_json(),
        salt=state.salt,
        status=state.status,
        started_at=body.started_at,
        guardrail=None if body.guardrail is None else body.guardrail.model_dump(),
    )
    stored = ExperimentState.of(row)
    book.put(stored)
    return stored


async def report(
    *, session: AsyncSession, name: str, settings: Settings, sequential: bool, cuped: bool
) -> dict[str, Any]:
    """The report of the stored experiment `name` under the configured attribution."""
    options = ReportOptions(
        window=timedelta(seconds=settings.attribution_window_s),
        conversions=settings.conversion_types,
        pre_window=timedelta(days=settings.experiment_pre_window_days),
        reading=Reading(sequential=sequential, tuning=settings.experiment_sequential_tuning),
        cuped=cuped,
        guardrail={
            "metric": settings.experiment_guardrail,
            "tolerance": settings.experiment_guardrail_tolerance,
        },
    )
    state = await stored_experiment(session=session, name=name)
    return await experiment_report(session=session, state=state, options=options)
