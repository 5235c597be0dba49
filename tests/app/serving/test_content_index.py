"""Content vectors in the service: a content model takes new catalog items without a retrain,
and retraining reads the stored catalog."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from app.config import Settings
from app.training.demo import synthetic_catalog, synthetic_shop
from models.catalog import item_text
from models.content import TextEncoder, item_features
from models.split import build_leave_one_out
from models.train import save_trained, train_model
from tests.app.serving_fixtures import ids, post_history
from tests.conftest import running_app

ITEMS = 60


@pytest.fixture(scope="module")
def content_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The content model trained on the generated shop with its catalog's text: root/content/v1."""
    root = tmp_path_factory.mktemp("content-models")
    split = build_leave_one_out(synthetic_shop(users=200, items=ITEMS, length=12, groups=3), k=2)
    texts = {item.item_id: item_text(item) for item in synthetic_catalog(ITEMS, groups=3)}
    features, _ = item_features(split.item_ids, texts, TextEncoder())
    trained = train_model("content", split, {}, item_features=features)
    save_trained(trained.model, trained.report, split, root / "content" / "v1")
    return root


@pytest.fixture
async def client(settings: Settings, content_models: Path) -> httpx.AsyncClient:  # type: ignore[override]
    """A client of an app that serves the content model."""
    settings.model_dir, settings.refresh_interval_s = content_models, 3600
    async with running_app(settings) as http:
        yield http  # type: ignore[misc]


async def refresh(client: httpx.AsyncClient) -> None:
    """What the background refresh does, now, and the content vectors it queued, encoded."""
    assert (await client.post("/models/reload")).status_code == 200
    await client.app.state.services.content.settled()  # type: ignore[attr-defined]
    assert (await client.post("/models/reload")).status_code == 200  # takes the encoded items


async def test_a_new_item_is_recommended_and_similar_without_a_retrain(
    client: httpx.AsyncClient,
) -> None:
    catalog = [
        {
            "item_id": i.item_id,
            "title": i.title,
            "categories": i.categories,
            "attributes": i.attributes,
        }
        for i in synthetic_catalog(ITEMS, groups=3)
    ]
    await client.put("/items", json={"items": catalog})
    mugs = [i["item_id"] for i in catalog if " mug " in i["title"]]  # the first group: 20 mugs
    await post_history(client, "mug-lover", mugs[:4])
    # k covers every unseen mug: the new mug must rank above every item of the other groups.
    params = {"user_id": "mug-lover", "k": len(mugs), "model": "content"}
    before = ids(await client.get("/recommend", params=params))  # cached with its ranked list
    new = {**catalog[1], "item_id": "sku-new", "title": "Blue mug 99"}
    await client.put("/items", json={"items": [new]})
    await refresh(client)
    after = ids(await client.get("/recommend", params=params))
    assert "sku-new" not in before and "sku-new" in after, after
    similar = (await client.get("/items/sku-new/similar", params={"k": 5})).json()
    assert similar["model"] == "content" and similar["model_version"] == "v1"
    assert all(item["item_id"] in mugs for item in similar["items"])
