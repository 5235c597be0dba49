"""GET /models, POST /models/reload."""

from typing import Any

from fastapi import APIRouter, Request

from app.api.recommend import services_of
from app.deps import AdminKey

router = APIRouter(prefix="/models", tags=["models"])


@router.get("")
async def list_models(request: Request) -> dict[str, Any]:
    """Loaded versions with their metadata, and checkpoints that were refused."""
    registry = services_of(request).registry
    return {
        "models": [m.describe() for _, m in sorted(registry.models.items())],
        "default": getattr(registry.default(), "name", None),
        "errors": registry.errors,
    }


@router.post("/reload", dependencies=[AdminKey])
async def reload_models(request: Request) -> dict[str, Any]:
    """Load the newest checkpoints now; a failing one is refused and the old one keeps serving."""
    return await services_of(request).registry.reload()
