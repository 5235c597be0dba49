"""A NeuMF checkpoint (a score that is not a dot product) serves on /recommend and /compare."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch

from app.config import Settings
from app.serving.registry import load_version
from app.training.demo import synthetic_shop
from models.split import build_leave_one_out
from models.train import save_trained, train_model
from tests.app.serving_fixtures import copy_models, ids, post_history
from tests.conftest import running_app

GROUP = [f"sku-{n}" for n in range(10)]  # one of the generated shop's item groups, in order
TINY = {"gmf_factors": 8, "mlp_factors": 8, "mlp_layers": "16,8", "epochs": 8, "lr": 0.01}


@pytest.fixture(scope="module")
def neumf_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny NeuMF trained on the generated shop, refit as `recsys retrain` does."""
    split = build_leave_one_out(synthetic_shop(users=200, items=60, length=12, groups=3), k=2)
    trained = train_model("neumf", split, TINY, seed=0)
    path = tmp_path_factory.mktemp("neumf") / "neumf" / "v1"
    save_trained(trained.model, trained.report, split, path)
    return path


@pytest.fixture
async def client(
    settings: Settings, trained_models: Path, neumf_checkpoint: Path, tmp_path: Path
) -> AsyncIterator[httpx.AsyncClient]:
    """An app serving popularity, mf, sasrec and neumf."""
    root = copy_models(trained_models, tmp_path / "models")
    copy_models(neumf_checkpoint, root / "neumf" / "v1")
    settings.model_dir = root
    settings.refresh_interval_s = 3600
    async with running_app(settings) as http:
        yield http


def test_loaded_neumf_scores_through_its_network(neumf_checkpoint: Path) -> None:
    loaded = load_version(neumf_checkpoint)
    assert not loaded.dot_scored
    vectors = loaded.model.user_vectors([np.arange(5)])
    want = loaded.model.score_vectors(vectors)
    torch.testing.assert_close(loaded.scores(vectors), want, rtol=0, atol=0)
    torch.testing.assert_close(loaded.scores(vectors, start=7), want[:, 7:], rtol=0, atol=0)
    assert not torch.allclose(want, vectors @ loaded.item_vectors.T)


async def test_recommend_serves_neumf(client: httpx.AsyncClient) -> None:
    await post_history(client, "nora", GROUP[:5])
    response = await client.get("/recommend", params={"user_id": "nora", "k": 5, "model": "neumf"})
    body = response.json()
    assert (body["model"], body["model_version"], body["fallback"]) == ("neumf", "v1", None)
    assert len(ids(response)) == 5 and not set(ids(response)) & set(GROUP[:5])
    anonymous = await client.post(
        "/recommend", json={"user_id": "anon-1", "history": GROUP[:5], "k": 5, "model": "neumf"}
    )
    assert ids(anonymous) == ids(response)  # a stored and a posted history fold in alike


async def test_compare_shows_neumf(client: httpx.AsyncClient) -> None:
    await post_history(client, "otto", GROUP[:5])
    body = (await client.get("/compare", params={"user_id": "otto", "k": 5})).json()
    rows = {m["model"]: m for m in body["models"]}
    assert "neumf" in rows and len(rows["neumf"]["items"]) == 5
