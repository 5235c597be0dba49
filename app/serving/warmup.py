"""Warm-up before a swap: a new version of a serving model computes its cached states for the
most active users before it takes traffic, so a promotion (or a rollback) is no cold-cache storm.

The cache keys a user's state by model version (`LoadedModel.cache_field`), so a new version
finds nothing cached and every request right after the swap would be cold. Here, between the
registry's load and its swap, the new version's state (vector and ranked list, exactly what a
cold request computes in app/serving/state.py) is built for up to `warm_users` users with the
most recent events, in batches on the encode worker, and stored under the new version's key;
after `warm_seconds` it swaps in anyway. The states are keyed by version, so in Redis they
serve every replica, also those that did not warm. A cache or database failure is logged and
counted and ends the warm-up early; it never keeps a version from serving.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from app.cache import MISS
from app.db import repo
from app.serving.registry import LoadedModel
from app.serving.services import Ask, Services
from app.serving.state import UserState, encode, marks_of, missing

log = logging.getLogger(__name__)
# Outcomes of one user: stored now, found cached (another replica warmed it), no state to
# store (no known items; events arrived meanwhile), or the cache or database failed.
RESULTS = ("warmed", "cached", "skipped", "failed")


async def warm_versions(services: Services, models: Sequence[LoadedModel]) -> None:
    """Warm each new version for the most active users within one `warm_seconds` budget; never
    raises (the caller swaps afterwards whatever happened)."""
    settings = services.settings
    if settings.warm_users <= 0 or not models:
        return
    deadline = time.monotonic() + settings.warm_seconds
    try:
        users = await asyncio.wait_for(active_users(services), settings.warm_seconds)
    except Exception as error:  # TimeoutError included: serve cold rather than late
        log.warning("warm-up: reading the most active users failed: %r", error)
        for model in models:
            _report(services, model, "aborted", error=repr(error))
            services.metrics.child(services.metrics.warmups, model.name, "aborted").inc()
        return
    for model in models:
        await warm_version(services, model, users, deadline)


async def active_users(services: Services) -> list[str]:
    """Up to `warm_users` users with the most events in the recent window, most active first."""
    settings = services.settings
    async with services.sessionmaker() as session:
        return await repo.most_active_users(
            session=session, window_days=settings.warm_window_days, limit=settings.warm_users
        )


async def warm_version(
    services: Services, model: LoadedModel, users: Sequence[str], deadline: float
) -> dict[str, Any]:
    """Cache `model`'s state for `users` in batches until done or the deadline; the report."""
    started = time.monotonic()
    report = _report(services, model, "warming", users=len(users))
    batch = services.encoder.max_batch
    for start in range(0, len(users), batch):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            report["state"] = "deadline"
            break
        try:
            outcomes = await asyncio.wait_for(
                _warm_batch(services, model, users[start : start + batch]), remaining
            )
        except TimeoutError:
            report["state"] = "deadline"
            break
        _count(services, model, report, outcomes)
        if outcomes and outcomes.count("failed") == len(outcomes):
            report["state"] = "aborted"  # the cache or database is down: swap now, serve cold
            break
        report["seconds"] = round(time.monotonic() - started, 3)
        await asyncio.sleep(0)  # let waiting requests run between batches
    if report["state"] == "warming":
        report["state"] = "done"
    report["seconds"] = round(time.monotonic() - started, 3)
    metrics = services.metrics
    metrics.child(metrics.warmup_seconds, model.name).observe(report["seconds"])
    metrics.child(metrics.warmups, model.name, report["state"]).inc()
    log.info("warm-up of %s %s: %s", model.name, model.version, report)
    return report


async def _warm_batch(services: Services, model: LoadedModel, users: Sequence[str]) -> list[str]:
    """Each user's outcome; the misses of one batch share the encode worker's model calls."""
    results = await asyncio.gather(
        *(_warm_user(services, model, user) for user in users), return_exceptions=True
    )
    errors = [r for r in results if isinstance(r, BaseException)]
    if errors:
        log.warning(
            "warm-up of %s: %d users failed, e.g. %r", model.version, len(errors), errors[0]
        )
    return [r if isinstance(r, str) else "failed" for r in results]


async def _warm_user(services: Services, model: LoadedModel, user_id: str) -> str:
    """Build and store the user's state for `model` as a cold request would (not counted as a
    request's cache lookup); the outcome, one of RESULTS."""
    cache = services.cache
    seen = await cache.lookup(user_id, model.cache_field)
    if seen is MISS:  # the cache failed, or the user's invalidation is still pending
        return "failed"
    if seen.vector is not None and UserState.unpack(seen.vector, model.dim) is not None:
        return "cached"
    history, bits, times = await missing(Ask(user_id=user_id), seen, services)
    state = await encode(model, history, marks_of(bits, services), services, bits, times)
    if state is None:
        return "skipped"
    stored = await cache.store(
        seen,
        state.pack(),
        history if seen.history is None else None,
        bits if seen.marks is None else None,
        times if seen.history is None else None,
    )
    return "warmed" if stored else "skipped"  # not stored: events arrived, or the cache failed


def _report(services: Services, model: LoadedModel, state: str, **extra: Any) -> dict[str, Any]:
    """A fresh progress report for `model`, published in the registry (for /readyz)."""
    report: dict[str, Any] = {
        "version": model.version,
        "state": state,
        "users": 0,
        **dict.fromkeys(RESULTS, 0),
        "seconds": 0.0,
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        **extra,
    }
    services.registry.warmups[model.name] = report
    return report


def _count(
    services: Services, model: LoadedModel, report: dict[str, Any], outcomes: list[str]
) -> None:
    """Add a batch's outcomes to the report and the metrics."""
    metrics = services.metrics
    for result in RESULTS:
        n = outcomes.count(result)
        if n:
            report[result] += n
            metrics.child(metrics.warmup_users, model.name, result).inc(n)
