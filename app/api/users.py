"""DELETE /users/{user_id}: erasure; GET /users/{user_id}/erasure: its receipt."""

from typing import Annotated

from fastapi import APIRouter, Path

from app.api.deps import AdminKey, CacheDep, ServicesDep, SessionDep
from app.privacy.erasure import erase_user as erase_everywhere
from app.privacy.erasure import erasure_receipt
from app.schemas.admin import Erased, ErasureReceipt
from app.schemas.core import Id

router = APIRouter(prefix="/users", tags=["users"])
UserId = Annotated[Id, Path()]


@router.delete("/{user_id}", response_model=Erased, dependencies=[AdminKey])
async def erase_user(
    user_id: UserId, session: SessionDep, cache: CacheDep, services: ServicesDep
) -> Erased:
    """Erase the user's events, exposures, cached state and checkpoint metadata; a receipt
    (hashed id, time, counts) is kept."""
    return await erase_everywhere(
        user_id=user_id,
        session=session,
        cache=cache,
        model_dir=services.settings.model_dir,
        loaded_metas=[model.meta for model in services.registry.models.values()],
    )


@router.get(
    "/{user_id}/erasure",
    response_model=ErasureReceipt,
    dependencies=[AdminKey],
    responses={404: {"description": "the user was never erased"}},
)
async def get_erasure(user_id: UserId, session: SessionDep) -> ErasureReceipt:
    """The newest erasure receipt of the user: when, and how much was deleted."""
    return await erasure_receipt(user_id=user_id, session=session)
