"""Coalesce concurrent user-vector computations into one batched model call.

Requests that miss the cache in the same event-loop iteration share one forward pass: for a
Transformer the per-call overhead dominates at batch size 1, so under concurrency this cuts the
CPU per cold request. A lone request waits for nothing (the flush runs on the next iteration).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import numpy as np
import torch

from app.registry import LoadedModel

Pending = list[tuple[np.ndarray, asyncio.Future[torch.Tensor]]]


class EncodeBatcher:
    """Per model version, the histories waiting to be encoded in the next loop iteration."""

    def __init__(self, max_batch: int = 64, on_batch: Callable[[int], None] | None = None) -> None:
        self.max_batch, self.on_batch = max_batch, on_batch
        self.pending: dict[str, tuple[LoadedModel, Pending]] = {}

    async def encode(self, model: LoadedModel, seen: np.ndarray) -> torch.Tensor:
        """The user vector (D,) for one history of item indices."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[torch.Tensor] = loop.create_future()
        entry = self.pending.get(model.cache_field)
        if entry is None:
            entry = self.pending[model.cache_field] = (model, [])
            loop.call_soon(self._flush, model.cache_field)
        entry[1].append((seen, future))
        if len(entry[1]) >= self.max_batch:
            self._flush(model.cache_field)
        return await future

    def _flush(self, key: str) -> None:
        """Encode everything queued for one model version and resolve the futures."""
        entry = self.pending.pop(key, None)
        if entry is None:
            return
        model, batch = entry
        if self.on_batch is not None:
            self.on_batch(len(batch))
        try:
            with torch.inference_mode():
                vectors = model.model.user_vectors([seen for seen, _ in batch])  # (B, D)
            vectors = vectors.to(torch.float32)
        except Exception as error:  # every waiter sees the failure
            for _, future in batch:
                if not future.done():
                    future.set_exception(error)
            return
        for row, (_, future) in enumerate(batch):
            if not future.done():
                future.set_result(vectors[row].contiguous())
