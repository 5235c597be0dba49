"""GET /models, POST /models/reload."""

from fastapi import APIRouter, Request

from app.api.deps import AdminKey, ReadKey, ServicesDep, SettingsDep, is_admin
from app.api.paths import public_errors, public_model
from app.schemas import LoadedModels, ModelsOut
from app.serving.lifecycle import refresh

router = APIRouter(prefix="/models", tags=["models"])


@router.get("", response_model=ModelsOut, dependencies=[ReadKey])
async def list_models(request: Request, services: ServicesDep, settings: SettingsDep) -> ModelsOut:
    """Loaded versions with their metadata, and checkpoints that were refused; checkpoint paths
    only with the admin key."""
    registry = services.registry
    admin = is_admin(request, settings)
    models = [m.describe() for _, m in sorted(registry.models.items())]
    return ModelsOut.model_validate(
        {
            "models": models if admin else [public_model(m) for m in models],
            "default": getattr(registry.default(), "name", None),
            "errors": registry.errors if admin else public_errors(registry.errors),
        }
    )


@router.post("/reload", response_model=LoadedModels, dependencies=[AdminKey])
async def reload_models(services: ServicesDep) -> LoadedModels:
    """Load what should serve now (active versions, else newest on disk); a checkpoint that
    fails to load is refused with the reason and the old version keeps serving."""
    await refresh(services)
    return LoadedModels.model_validate(services.registry.describe())
