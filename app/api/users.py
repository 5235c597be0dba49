"""DELETE /users/{user_id}: erasure."""

from typing import Annotated

from fastapi import APIRouter, Path
from sqlalchemy import delete

from app.api.deps import AdminKey, CacheDep, SessionDep
from app.db.tables import Event, Exposure

router = APIRouter(prefix="/users", tags=["users"])


@router.delete("/{user_id}", dependencies=[AdminKey])
async def erase_user(
    user_id: Annotated[str, Path(min_length=1, max_length=256)],
    session: SessionDep,
    cache: CacheDep,
) -> dict[str, int]:
    """Erase the user's events, exposures and cached state."""
    events = await session.execute(delete(Event).where(Event.user_id == user_id))
    exposures = await session.execute(delete(Exposure).where(Exposure.user_id == user_id))
    await session.commit()
    await cache.run("drop_users", [user_id], history=True)
    return {"events": events.rowcount, "exposures": exposures.rowcount}  # type: ignore[attr-defined]
