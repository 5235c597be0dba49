"""GET /models, POST /models/reload."""

from fastapi import APIRouter

from app.api.deps import AdminKey, ServicesDep
from app.schemas import LoadedModels, ModelsOut
from app.serving.lifecycle import refresh

router = APIRouter(prefix="/models", tags=["models"])


@router.get("", response_model=ModelsOut)
async def list_models(services: ServicesDep) -> ModelsOut:
    """Loaded versions with their metadata, and checkpoints that were refused."""
    registry = services.registry
    return ModelsOut.model_validate(
        {
            "models": [m.describe() for _, m in sorted(registry.models.items())],
            "default": getattr(registry.default(), "name", None),
            "errors": registry.errors,
        }
    )


@router.post("/reload", response_model=LoadedModels, dependencies=[AdminKey])
async def reload_models(services: ServicesDep) -> LoadedModels:
    """Load what should serve now (active versions, else newest on disk); a checkpoint that
    fails to load is refused with the reason and the old version keeps serving."""
    await refresh(services)
    return LoadedModels.model_validate(services.registry.describe())
