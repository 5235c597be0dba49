"""GET /models, POST /models/reload."""

from typing import Any

from fastapi import APIRouter, Request

from app.api.deps import AdminKey
from app.api.recommend import services_of
from app.serving.lifecycle import refresh

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
    """Load what should serve now (active versions, else newest on disk); a checkpoint that
    fails to load is refused with the reason and the old version keeps serving."""
    services = services_of(request)
    await refresh(services)
    return services.registry.describe()
