"""DELETE /users/{user_id}: erasure."""

from typing import Annotated

from fastapi import APIRouter, Path

from app.api.deps import AdminKey, CacheDep, SessionDep
from app.db import repo
from app.schemas import Erased

router = APIRouter(prefix="/users", tags=["users"])


@router.delete("/{user_id}", response_model=Erased, dependencies=[AdminKey])
async def erase_user(
    user_id: Annotated[str, Path(min_length=1, max_length=256)],
    session: SessionDep,
    cache: CacheDep,
) -> Erased:
    """Erase the user's events, exposures and cached state."""
    events, exposures = await repo.erase_user(session=session, user_id=user_id)
    await session.commit()
    await cache.call(cache.backend.drop_users, [user_id], history=True)
    return Erased(events=events, exposures=exposures)
