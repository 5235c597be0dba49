"""Promote and roll back registered model versions: the rules `recsys models promote|rollback`
apply, as flows the dashboard calls (NotFound / Conflict instead of CLI errors)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession

from app.db import repo
from app.db.tables import ModelVersion
from app.errors import Conflict, NotFound


def _promoted(row: ModelVersion) -> float:
    """When the version was last promoted, in epoch seconds (0: never)."""
    return row.promoted_at.timestamp() if row.promoted_at else 0.0


def rollback_target(rows: Sequence[ModelVersion], name: str) -> ModelVersion | None:
    """The version of `name` that was active before the current one: the latest promoted
    retired version registered before it (None when there is none)."""
    mine = [r for r in rows if r.model_name == name]
    active = [r for r in mine if r.status == "active"]
    previous = [
        r
        for r in mine
        if r.status == "retired"
        and r.promoted_at is not None
        and (not active or r.id < active[0].id)
    ]
    return max(previous, key=_promoted) if previous else None


async def promote(*, session: AsyncSession, version: str) -> ModelVersion:
    """Make the registered `version` its model's only active version."""
    rows = await repo.model_versions(session=session)
    found = [r for r in rows if r.version == version]
    if not found:
        raise NotFound(f"no registered version {version!r}")
    if found[0].status == "active":
        raise Conflict(f"{version} is already active", loc=("form", "version"))
    await repo.activate_version(session=session, version=found[0])
    return found[0]


async def rollback(*, session: AsyncSession, name: str) -> ModelVersion:
    """Re-activate the version of `name` that was active before the current one."""
    rows = await repo.model_versions(session=session, name=name)
    if not rows:
        raise NotFound(f"no registered versions of model {name!r}")
    target = rollback_target(rows, name)
    if target is None:
        raise Conflict(
            f"{name} has no earlier active version to roll back to", loc=("form", "model")
        )
    await repo.activate_version(session=session, version=target)
    return target
