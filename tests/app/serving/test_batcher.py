"""The encoder batcher: concurrent misses share one model call, results go to the right caller."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch

from app.serving.batcher import EncodeBatcher
from app.serving.registry import load_version
from tests.app.serving_fixtures import TEST_MODELS


async def test_concurrent_histories_share_one_call(trained_models: Path) -> None:
    model = load_version(trained_models / "sasrec" / "v1")
    assert model.dim == 2 * TEST_MODELS["sasrec"]["hidden"]  # joined: two networks encode
    sizes: list[int] = []
    batcher = EncodeBatcher(on_batch=sizes.append, ranked_items=5)
    histories = [np.array(h, dtype=np.int64) for h in ([1, 2, 3], [4, 5], [7], [10, 11, 12, 13])]
    encoded = await asyncio.gather(*(batcher.encode(model, h) for h in histories))
    assert sizes == [4]
    for history, got in zip(histories, encoded, strict=True):
        alone = model.model.user_vectors([history])[0]
        assert torch.allclose(got.vector, alone, atol=1e-5)  # padding in a batch changes nothing
        scores = model.item_vectors @ alone
        scores[torch.from_numpy(history)] = float("-inf")
        best = torch.topk(scores, k=batcher.ranked_items).indices.numpy()
        assert got.ranked.tolist() == best.tolist()  # the batch's ranking is each user's own
        assert not set(got.ranked.tolist()) & set(history.tolist())
    await batcher.encode(model, histories[0])
    assert sizes == [4, 1]


async def test_a_failing_call_fails_every_waiter(trained_models: Path) -> None:
    model = load_version(trained_models / "mf" / "v1")
    batcher = EncodeBatcher()
    bad = np.array([10**9], dtype=np.int64)  # an index far outside the catalog
    results = await asyncio.gather(
        batcher.encode(model, bad), batcher.encode(model, bad), return_exceptions=True
    )
    assert all(isinstance(r, Exception) for r in results)
    with pytest.raises(Exception):  # noqa: B017 - whatever torch raises, it propagates
        await batcher.encode(model, bad)


class SlowEncoder:
    """A model whose encoding takes 0.2 s of a released GIL, like a long torch kernel."""

    def user_vectors(self, histories: list[np.ndarray]) -> torch.Tensor:
        time.sleep(0.2)
        return torch.stack([torch.full((4,), float(h[0])) for h in histories])


async def test_the_loop_keeps_serving_while_the_worker_encodes() -> None:
    items = torch.ones(8, 4)
    slow: Any = SimpleNamespace(
        cache_field="slow:v1",
        model=SlowEncoder(),
        item_vectors=items,
        scores=lambda vectors, start=0: vectors @ items[start:].T,  # LoadedModel.scores
    )
    sizes: list[int] = []
    batcher = EncodeBatcher(on_batch=sizes.append)
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    ticker = asyncio.create_task(tick())
    try:
        first = asyncio.create_task(batcher.encode(slow, np.array([1])))
        await asyncio.sleep(0.05)  # the first batch is on the worker now
        later = [asyncio.create_task(batcher.encode(slow, np.array([n]))) for n in (2, 3, 4)]
        vectors = await asyncio.gather(first, *later)
    finally:
        ticker.cancel()
        batcher.close()
    assert sizes == [1, 3]  # the misses that arrived meanwhile formed the next batch
    assert [float(e.vector[0]) for e in vectors] == [1.0, 2.0, 3.0, 4.0]  # each got its row
    assert ticks >= 10  # 0.4 s of encoding did not stall the event loop


async def test_histories_with_and_without_times_share_a_batch(trained_models: Path) -> None:
    model = load_version(trained_models / "sasrec" / "v1")
    assert model.model.uses_times  # the default config: time gaps
    sizes: list[int] = []
    batcher = EncodeBatcher(on_batch=sizes.append, ranked_items=5)
    histories = [np.array(h, dtype=np.int64) for h in ([1, 2, 3], [4, 5], [7, 8, 9])]
    times = [np.array([0, 5, 90_000]), None, np.array([0, 4000, 4001])]
    encoded = await asyncio.gather(
        *(batcher.encode(model, h, times=t) for h, t in zip(histories, times, strict=True))
    )
    assert sizes == [3]
    for history, stamps, got in zip(histories, times, encoded, strict=True):
        alone = model.model.user_vectors([history], None if stamps is None else [stamps])[0]
        assert torch.allclose(got.vector, alone, atol=1e-5)  # each row with its own times
    unknown = model.model.user_vectors([histories[0]])[0]
    assert not torch.allclose(encoded[0].vector, unknown, atol=1e-4)
