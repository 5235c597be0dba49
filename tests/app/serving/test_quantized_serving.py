"""int8 checkpoints serve beside their float ones, as separate models on /recommend and /compare."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from app.config import Settings
from models.quantize import quantize_checkpoint
from tests.app.serving_fixtures import copy_models, ids, post_history
from tests.conftest import running_app

GROUP = [f"sku-{n}" for n in range(10)]  # one of the generated shop's item groups, in order


@pytest.fixture
async def client(
    settings: Settings, trained_models: Path, tmp_path: Path
) -> AsyncIterator[httpx.AsyncClient]:
    """An app serving popularity, mf, sasrec and the int8 forms of mf and sasrec."""
    root = copy_models(trained_models, tmp_path / "models")
    for name in ("mf", "sasrec"):
        quantize_checkpoint(root / name / "v1", "int8", root / f"{name}-int8" / "v1")
    settings.model_dir = root
    settings.refresh_interval_s = 3600
    async with running_app(settings) as http:
        yield http


@pytest.mark.parametrize("name", ["mf", "sasrec"])
async def test_int8_serves_beside_float(client: httpx.AsyncClient, name: str) -> None:
    await post_history(client, "quinn", GROUP[:5])
    lists = {}
    for model in (name, f"{name}-int8"):
        response = await client.get(
            "/recommend", params={"user_id": "quinn", "k": 5, "model": model}
        )
        lists[model] = ids(response)
        assert (response.json()["model"], response.json()["model_version"]) == (model, "v1")
    assert not set(lists[f"{name}-int8"]) & set(GROUP[:5])
    assert len(set(lists[name]) & set(lists[f"{name}-int8"])) >= 4


async def test_compare_shows_float_and_int8_rows(client: httpx.AsyncClient) -> None:
    await post_history(client, "rory", GROUP[:5])
    body = (await client.get("/compare", params={"user_id": "rory", "k": 5})).json()
    names = [m["model"] for m in body["models"]]
    assert names == ["mf", "mf-int8", "popularity", "sasrec", "sasrec-int8"]
    pairs = {(o["a"], o["b"]): o["jaccard"] for o in body["overlap"]}
    assert pairs[("sasrec", "sasrec-int8")] >= 0.6
    described = {m["name"]: m for m in (await client.get("/models")).json()["models"]}
    assert described["sasrec-int8"]["config"] == described["sasrec"]["config"]
