"""The encoder batcher: concurrent misses share one model call, results go to the right caller."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest
import torch

from app.batcher import EncodeBatcher
from app.registry import load_version


async def test_concurrent_histories_share_one_call(trained_models: Path) -> None:
    model = load_version(trained_models / "sasrec" / "v1")
    sizes: list[int] = []
    batcher = EncodeBatcher(on_batch=sizes.append)
    histories = [np.array(h, dtype=np.int64) for h in ([1, 2, 3], [4, 5], [7], [10, 11, 12, 13])]
    vectors = await asyncio.gather(*(batcher.encode(model, h) for h in histories))
    assert sizes == [4]
    for history, vector in zip(histories, vectors, strict=True):
        alone = model.model.user_vectors([history])[0]
        assert torch.allclose(vector, alone, atol=1e-5)  # padding in a batch changes nothing
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
