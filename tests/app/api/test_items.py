"""The catalog endpoints."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any
from unittest.mock import ANY

import httpx
import pytest

from app.config import Settings
from tests.conftest import running_app

FULL_ITEM: dict[str, Any] = {
    "item_id": "sku-42",
    "title": "Trail shoe ü",
    "description": "Grippy.\nLight 😀",
    "categories": ["shoes/running", "outdoor"],
    "attributes": {"brand": "Acme", "waterproof": True, "weight_g": 280, "rating": 4.5},
    "price": 89.9,
    "active": False,
}


async def put_raw(client: httpx.AsyncClient, body: dict[str, Any]) -> httpx.Response:
    """PUT /items with the body as ASCII JSON: \\u escapes reach the server as sent."""
    content = json.dumps(body)  # ensure_ascii: a lone surrogate travels as its escape
    return await client.put("/items", content=content, headers={"content-type": "application/json"})


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


async def test_every_field_round_trips(client: httpx.AsyncClient) -> None:
    assert (await client.put("/items", json={"items": [FULL_ITEM]})).json() == {"upserted": 1}
    item = (await client.get("/items/sku-42")).json()
    assert {k: v for k, v in item.items() if k != "updated_at"} == FULL_ITEM
    assert isinstance(item["attributes"]["weight_g"], int)
    assert datetime.fromisoformat(item["updated_at"]).tzinfo is not None  # UTC on SQLite too
    # An update replaces every field; the ones left out go back to their defaults.
    assert (await client.put("/items", json={"items": [{"item_id": "sku-42"}]})).status_code == 200
    item = (await client.get("/items/sku-42")).json()
    assert (item["description"], item["categories"], item["price"]) == (None, [], None)


async def test_a_paired_surrogate_is_text(client: httpx.AsyncClient) -> None:
    """JSON's escaped surrogate pair (\\ud83d\\ude00) is one character, stored like any other."""
    assert (await put_raw(client, {"items": [{"item_id": "e", "title": "😀"}]})).status_code == 200
    assert (await client.get("/items/e")).json()["title"] == "😀"


async def test_repeated_id_in_one_batch_keeps_the_last(client: httpx.AsyncClient) -> None:
    body = {"items": [{"item_id": "a", "title": "first"}, {"item_id": "a", "title": "second"}]}
    assert (await client.put("/items", json=body)).json() == {"upserted": 1}
    assert (await client.get("/items/a")).json()["title"] == "second"


async def test_unknown_item_is_404(client: httpx.AsyncClient) -> None:
    response = await client.get("/items/missing")
    assert response.status_code == 404
    assert "missing" in response.json()["detail"]


async def test_an_id_no_item_can_have_is_404(client: httpx.AsyncClient) -> None:
    assert (await client.get("/items/a%00b")).status_code == 404


async def test_bad_item_is_named(client: httpx.AsyncClient) -> None:
    body = {"items": [{"item_id": "ok"}, {"item_id": "x", "active": "maybe"}]}
    response = await client.put("/items", json=body)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "items", 1, "active"]
    assert (await client.get("/items/ok")).status_code == 404


NUL, SURROGATE = "\x00", "\ud800"
BAD_FIELDS: list[tuple[str, dict[str, Any], list[Any]]] = [
    ("nul id", {"item_id": f"x{NUL}"}, ["item_id"]),
    ("surrogate id", {"item_id": f"x{SURROGATE}"}, ["item_id"]),
    ("nul title", {"title": f"a{NUL}b"}, ["title"]),
    ("surrogate title", {"title": f"a{SURROGATE}"}, ["title"]),
    ("low surrogate title", {"title": "\udc00"}, ["title"]),
    ("nul description", {"description": NUL}, ["description"]),
    ("surrogate description", {"description": SURROGATE}, ["description"]),
    ("nul category", {"categories": ["ok", NUL]}, ["categories", 1]),
    ("surrogate category", {"categories": [SURROGATE]}, ["categories", 0]),
    ("nul attribute name", {"attributes": {f"a{NUL}": "x"}}, ["attributes", f"a{NUL}", "[key]"]),
    # pydantic names a key it cannot read as UTF-8 with replacement characters
    ("surrogate attribute name", {"attributes": {SURROGATE: "x"}}, ["attributes", ANY, "[key]"]),
    ("nul attribute value", {"attributes": {"a": NUL}}, ["attributes", "a"]),
    ("surrogate attribute value", {"attributes": {"a": SURROGATE}}, ["attributes", "a"]),
    ("nested attribute", {"attributes": {"a": {"b": 1}}}, ["attributes", "a"]),
    ("list attribute", {"attributes": {"a": [1]}}, ["attributes", "a"]),
    ("null attribute", {"attributes": {"a": None}}, ["attributes", "a"]),
    ("NaN attribute", {"attributes": {"a": float("nan")}}, ["attributes", "a"]),
    ("inf attribute", {"attributes": {"a": float("inf")}}, ["attributes", "a"]),
    ("empty attribute name", {"attributes": {"": "x"}}, ["attributes", "", "[key]"]),
    ("long attribute name", {"attributes": {"n" * 65: "x"}}, ["attributes", "n" * 65, "[key]"]),
    ("long attribute value", {"attributes": {"a": "v" * 1025}}, ["attributes", "a"]),
    ("too many attributes", {"attributes": {f"a{n}": n for n in range(65)}}, ["attributes"]),
    ("long title", {"title": "t" * 1025}, ["title"]),
    ("long description", {"description": "d" * 10_001}, ["description"]),
    ("long category", {"categories": ["c" * 257]}, ["categories", 0]),
    ("empty category", {"categories": [""]}, ["categories", 0]),
    ("too many categories", {"categories": [f"c{n}" for n in range(65)]}, ["categories"]),
    ("categories not a list", {"categories": "shoes"}, ["categories"]),
    ("negative price", {"price": -1}, ["price"]),
    ("NaN price", {"price": float("nan")}, ["price"]),
    ("inf price", {"price": float("inf")}, ["price"]),
    ("text price", {"price": "cheap"}, ["price"]),
    ("unknown field", {"colour": "red"}, ["colour"]),
]


@pytest.mark.parametrize(
    ("fields", "where"), [case[1:] for case in BAD_FIELDS], ids=[c[0] for c in BAD_FIELDS]
)
async def test_bad_fields_are_422_and_store_nothing(
    client: httpx.AsyncClient, fields: dict[str, Any], where: list[Any]
) -> None:
    bad = {"item_id": "bad", **fields}
    body = {"items": [{"item_id": "ok"}, {"item_id": "ok2"}, {"item_id": "ok3"}, bad]}
    response = await put_raw(client, body)
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"] == ["body", "items", 3, *where]
    assert (await client.get("/items/ok")).status_code == 404


async def test_limits_are_inclusive(client: httpx.AsyncClient) -> None:
    item = {
        "item_id": "i" * 256,
        "title": "t" * 1024,
        "description": "d" * 10_000,
        "categories": ["c" * 256] * 64,
        "attributes": {f"{n:064d}": "v" * 1024 for n in range(64)},
        "price": 0,
    }
    assert (await client.put("/items", json={"items": [item]})).status_code == 200
    stored = (await client.get(f"/items/{'i' * 256}")).json()
    assert (len(stored["categories"]), len(stored["attributes"])) == (64, 64)


async def test_items_need_the_write_key(settings: Settings) -> None:
    settings.write_key = "k"
    async with running_app(settings) as client:
        body = {"items": [{"item_id": "a"}]}
        assert (await client.put("/items", json=body)).status_code == 401
        assert (
            await client.put("/items", json=body, headers={"X-API-Key": "k"})
        ).status_code == 200


async def test_batch_limit(settings: Settings) -> None:
    settings.max_items_per_batch = 2
    async with running_app(settings) as client:
        body = {"items": [{"item_id": str(n)} for n in range(3)]}
        response = await client.put("/items", json=body)
        assert response.status_code == 422
        assert response.json()["detail"][0]["loc"] == ["body", "items"]
