"""GET/PUT /experiments/{name}, GET /experiments/{name}/report."""

from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Request
from fastapi.exceptions import RequestValidationError

from app.api.deps import AdminKey, SessionDep
from app.api.recommend import services_of
from app.experiments.book import (
    OVERRIDE,
    ExperimentState,
    experiment_report,
    get_experiment,
    put_experiment,
)
from app.experiments.routing import Arm
from app.schemas import ExperimentIn

router = APIRouter(prefix="/experiments", tags=["experiments"])
Name = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")]


async def _existing(session: SessionDep, name: str) -> ExperimentState:
    state = await get_experiment(session=session, name=name)
    if state is None:
        raise HTTPException(404, f"experiment {name!r} not found")
    return state


@router.get("/{name}", dependencies=[AdminKey])
async def read_experiment(name: Name, session: SessionDep) -> dict[str, Any]:
    """Arms, weights, salt and status."""
    return (await _existing(session, name)).to_json()


@router.put("/{name}", dependencies=[AdminKey])
async def write_experiment(
    name: Name, body: ExperimentIn, session: SessionDep, request: Request
) -> dict[str, Any]:
    """Create or replace an experiment; arms name loaded models."""
    arm_names = [a.name for a in body.arms]
    if len(set(arm_names)) != len(arm_names) or OVERRIDE in arm_names:
        raise RequestValidationError(
            [
                {
                    "type": "value_error",
                    "loc": ("body", "arms"),
                    "msg": f"arm names must be unique and not {OVERRIDE!r}",
                    "input": arm_names,
                }
            ]
        )
    services = services_of(request)
    missing = sorted({a.model for a in body.arms} - set(services.registry.models))
    if missing:
        raise HTTPException(422, f"arms name models that are not loaded: {missing}")
    arms = tuple(Arm(a.name, a.model, a.weight) for a in body.arms)
    state = ExperimentState(name, arms, body.salt or name, body.status)
    stored = await put_experiment(session=session, state=state)
    services.experiments.put(stored)
    return stored.to_json()


@router.get("/{name}/report", dependencies=[AdminKey])
async def report(name: Name, session: SessionDep, request: Request) -> dict[str, Any]:
    """Per arm: exposures, clicks, CTR, conversions, 95% Wilson intervals, tests vs control."""
    settings = services_of(request).settings
    return await experiment_report(
        session=session,
        state=await _existing(session, name),
        window=timedelta(seconds=settings.attribution_window_s),
        conversions=settings.conversion_types,
    )
