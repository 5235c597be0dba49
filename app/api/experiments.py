"""GET/PUT /experiments/{name}, GET /experiments/{name}/report (admin key)."""

from typing import Annotated

from fastapi import APIRouter, Path, Query

from app.api.deps import AdminKey, ServicesDep, SessionDep
from app.experiments import flows
from app.schemas import ExperimentIn, ExperimentOut, ExperimentReport

router = APIRouter(prefix="/experiments", tags=["experiments"], dependencies=[AdminKey])
Name = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")]


@router.get("/{name}", response_model=ExperimentOut)
async def read_experiment(name: Name, session: SessionDep) -> ExperimentOut:
    """Arms, weights, salt and status; 404 when there is no such experiment."""
    state = await flows.stored_experiment(session=session, name=name)
    return ExperimentOut.model_validate(state.to_json())


@router.put("/{name}", response_model=ExperimentOut)
async def write_experiment(
    name: Name, body: ExperimentIn, session: SessionDep, services: ServicesDep
) -> ExperimentOut:
    """Create or replace an experiment; its arms must name loaded models (else 422)."""
    state = await flows.save_experiment(
        session=session,
        book=services.experiments,
        loaded=services.registry.models,
        name=name,
        body=body,
    )
    return ExperimentOut.model_validate(state.to_json())


@router.get("/{name}/report", response_model=ExperimentReport)
async def report(
    name: Name,
    session: SessionDep,
    services: ServicesDep,
    sequential: Annotated[
        bool, Query(description="always-valid intervals, safe to read daily; false: fixed")
    ] = True,
    cuped: Annotated[
        bool, Query(description="reduce variance with each user's pre-experiment activity")
    ] = True,
) -> ExperimentReport:
    """Per arm: users, exposures, per-user clicks, conversions and revenue with 95% intervals,
    lifts against the control, the sample-ratio check, the guardrail, warnings."""
    found = await flows.report(
        session=session,
        name=name,
        settings=services.settings,
        sequential=sequential,
        cuped=cuped,
    )
    return ExperimentReport.model_validate(found)
