"""The catalog endpoints."""

from __future__ import annotations

import httpx

from app.config import Settings
from tests.conftest import running_app


async def test_upsert_then_read(client: httpx.AsyncClient) -> None:
    body = {
        "items": [
            {"item_id": "sku-1", "title": "Mug", "attributes": {"colour": "red"}},
            {"item_id": "sku-2"},
        ]
    }
    assert (await client.put("/items", json=body)).json() == {"upserted": 2}
    item = (await client.get("/items/sku-1")).json()
    assert (item["title"], item["attributes"], item["active"]) == ("Mug", {"colour": "red"}, True)
    update = {"items": [{"item_id": "sku-1", "title": "Big mug", "active": False}]}
    assert (await client.put("/items", json=update)).status_code == 200
    item = (await client.get("/items/sku-1")).json()
    assert (item["title"], item["attributes"], item["active"]) == ("Big mug", {}, False)


async def test_repeated_id_in_one_batch_keeps_the_last(client: httpx.AsyncClient) -> None:
    body = {"items": [{"item_id": "a", "title": "first"}, {"item_id": "a", "title": "second"}]}
    assert (await client.put("/items", json=body)).json() == {"upserted": 1}
    assert (await client.get("/items/a")).json()["title"] == "second"


async def test_unknown_item_is_404(client: httpx.AsyncClient) -> None:
    response = await client.get("/items/missing")
    assert response.status_code == 404
    assert "missing" in response.json()["detail"]


async def test_bad_item_is_named(client: httpx.AsyncClient) -> None:
    body = {"items": [{"item_id": "ok"}, {"item_id": "x", "active": "maybe"}]}
    response = await client.put("/items", json=body)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "items", 1, "active"]
    assert (await client.get("/items/ok")).status_code == 404


async def test_items_need_the_write_key(settings: Settings) -> None:
    settings.write_key = "k"
    async with running_app(settings) as client:
        body = {"items": [{"item_id": "a"}]}
        assert (await client.put("/items", json=body)).status_code == 401
        assert (
            await client.put("/items", json=body, headers={"X-API-Key": "k"})
        ).status_code == 200
