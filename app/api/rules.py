"""PUT/GET/DELETE /rules/{name}, GET /rules: merchandising rules (admin key)."""

from typing import Annotated

from fastapi import APIRouter, Path

from app.api.deps import AdminKey, ServicesDep, SessionDep
from app.schemas import RuleIn, RuleList, RuleOut
from app.serving import rules

router = APIRouter(prefix="/rules", tags=["rules"], dependencies=[AdminKey])
Name = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")]


@router.get("", response_model=RuleList)
async def list_rules(session: SessionDep) -> RuleList:
    """Every stored rule, by name (the order they apply in)."""
    found = await rules.stored_rules(session=session)
    return RuleList.model_validate({"rules": [rule.to_json() for rule in found]})


@router.get("/{name}", response_model=RuleOut)
async def read_rule(name: Name, session: SessionDep) -> RuleOut:
    """One stored rule; 404 when there is none."""
    state = await rules.stored_rule(session=session, name=name)
    return RuleOut.model_validate(state.to_json())


@router.put("/{name}", response_model=RuleOut)
async def write_rule(
    name: Name, body: RuleIn, session: SessionDep, services: ServicesDep
) -> RuleOut:
    """Create or replace a rule (boosts by attribute or category, pinned items); it applies
    on this replica at once, on the others within RECSYS_REFRESH_INTERVAL_S."""
    state = await rules.save_rule(session=session, book=services.rules, name=name, body=body)
    return RuleOut.model_validate(state.to_json())


@router.delete("/{name}", response_model=RuleOut)
async def remove_rule(name: Name, session: SessionDep, services: ServicesDep) -> RuleOut:
    """Delete a rule and answer it as it was; 404 when there is none."""
    state = await rules.delete_rule(session=session, book=services.rules, name=name)
    return RuleOut.model_validate(state.to_json())
