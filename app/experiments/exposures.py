"""Exposure log: served lists are queued on the request path and written in batches off it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.db import repo
from app.observability import Metrics

log = logging.getLogger(__name__)


class ExposureLog:
    """A bounded queue drained by one background task; a full queue drops and counts."""

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        metrics: Metrics,
        *,
        flush_every_s: float = 0.5,
        max_batch: int = 2000,
        max_queue: int = 100_000,
    ) -> None:
        self.sessionmaker, self.metrics = sessionmaker, metrics
        self.flush_every_s, self.max_batch = flush_every_s, max_batch
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=max_queue)
        self.task: asyncio.Task[None] | None = None

    def record(self, row: dict[str, Any]) -> None:
        """Queue one exposure without waiting."""
        try:
            self.queue.put_nowait(row)
        except asyncio.QueueFull:
            self.metrics.exposures_dropped.inc()

    def start(self) -> None:
        """Start the background writer."""
        self.task = asyncio.create_task(self._run(), name="exposure-log")

    async def stop(self) -> None:
        """Stop the writer and write what is still queued."""
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        await self.flush()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.flush_every_s)
            await self.flush()

    async def flush(self) -> int:
        """Write everything queued now, in batches; failures are logged and counted."""
        written = 0
        while not self.queue.empty():
            rows = [self.queue.get_nowait() for _ in range(min(self.max_batch, self.queue.qsize()))]
            try:
                async with self.sessionmaker() as session:
                    await repo.insert_exposures(session=session, rows=rows)
                    await session.commit()
                written += len(rows)
            except Exception as error:
                self.metrics.exposures_dropped.inc(len(rows))
                log.warning("dropped %d exposures: %s", len(rows), error)
        return written
