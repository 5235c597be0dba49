"""POST /events: durable, idempotent ingestion."""

from fastapi import APIRouter
from fastapi.exceptions import RequestValidationError

from app.deps import CacheDep, MetricsDep, SessionDep, SettingsDep, WriteKey
from app.ingest import ingest_events
from app.schemas import EventBatch, EventsAccepted

router = APIRouter(prefix="/events", tags=["events"])


@router.post("", response_model=EventsAccepted, dependencies=[WriteKey])
async def post_events(
    batch: EventBatch,
    session: SessionDep,
    cache: CacheDep,
    metrics: MetricsDep,
    settings: SettingsDep,
) -> EventsAccepted:
    """Store a batch of events in one transaction; answers once it is committed."""
    if len(batch.events) > settings.max_events_per_batch:
        raise RequestValidationError(
            [
                {
                    "type": "too_long",
                    "loc": ("body", "events"),
                    "msg": f"at most {settings.max_events_per_batch} events per batch",
                    "input": len(batch.events),
                }
            ]
        )
    return await ingest_events(session=session, cache=cache, metrics=metrics, events=batch.events)
