"""Filters and merchandising rules over HTTP, on the real Postgres + Redis and on the default."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from app.config import Settings
from tests.app.serving_fixtures import ids, post_history
from tests.conftest import running_app

ADMIN = {"X-API-Key": "admin-secret"}
HISTORY = [f"sku-{n}" for n in range(5)]
KINDS = ("shoes/running", "shoes/trail", "bags")


def sku(n: int) -> dict[str, Any]:
    """sku-n: kind n % 3, brand acme when n is even, price n."""
    brand = "Acme" if n % 2 == 0 else "zeta"
    return {
        "item_id": f"sku-{n}",
        "categories": [KINDS[n % 3]],
        "attributes": {"brand": brand, "size": n % 4, "sale": n % 5 == 0},
        "price": float(n),
    }


def number(item_id: str) -> int:
    """n of sku-n."""
    return int(item_id.split("-")[1])


@pytest.fixture
async def client(serving_settings: Settings) -> httpx.AsyncClient:  # type: ignore[override]
    """An app serving the tiny models, with the 60 items in the catalog and eve's history."""
    serving_settings.admin_key = "admin-secret"
    async with running_app(serving_settings) as http:
        response = await http.put("/items", json={"items": [sku(n) for n in range(60)]})
        assert response.status_code == 200, response.text
        await post_history(http, "eve", HISTORY)
        yield http  # type: ignore[misc]


async def recommend(client: httpx.AsyncClient, **params: Any) -> list[str]:
    """The item ids of eve's list (mf, k=5 unless given)."""
    query = {"user_id": "eve", "k": 5, "model": "mf", **params}
    return ids(await client.get("/recommend", params=query))


async def test_category_filter_matches_path_prefixes(client: httpx.AsyncClient) -> None:
    shoes = await recommend(client, category="Shoes")  # case-insensitive, a prefix path
    assert len(shoes) == 5 and all(number(i) % 3 in (0, 1) for i in shoes)
    running = await recommend(client, category="shoes/running")
    assert len(running) == 5 and all(number(i) % 3 == 0 for i in running)
    either = await recommend(client, category=["shoes/trail", "bags"], k=40)
    assert len(either) == 37 and all(number(i) % 3 in (1, 2) for i in either)
    assert not set(either) & set(HISTORY)
    assert not await recommend(client, category="shoe")  # a prefix of a word is no path


async def test_attribute_filters_any_value_all_names(client: httpx.AsyncClient) -> None:
    acme = await recommend(client, **{"attr.brand": "acme"})
    assert len(acme) == 5 and all(number(i) % 2 == 0 for i in acme)
    both = await recommend(client, k=20, **{"attr.brand": ["acme", "zeta"]})
    assert len(both) == 20
    sized = await recommend(client, k=8, **{"attr.brand": "zeta", "attr.size": "3"})
    assert sized and all(number(i) % 2 == 1 and number(i) % 4 == 3 for i in sized)
    on_sale = await recommend(client, k=50, **{"attr.sale": "true", "category": "bags"})
    assert on_sale == [i for i in on_sale if number(i) % 5 == 0 and number(i) % 3 == 2]
    assert len(on_sale) == 4  # sku-5, 20, 35, 50


async def test_price_range_get_and_post(client: httpx.AsyncClient) -> None:
    got = await recommend(client, k=50, price_min=10, price_max=20)
    assert sorted(number(i) for i in got) == list(range(10, 21))
    body = {
        "user_id": "eve",
        "k": 50,
        "model": "sasrec",
        "filter": {
            "categories": ["bags"],
            "attributes": {"brand": ["ACME", "nobody"]},
            "price": {"min": 10, "max": 40},
        },
    }
    posted = ids(await client.post("/recommend", json=body))
    assert sorted(number(i) for i in posted) == [14, 20, 26, 32, 38]


@pytest.mark.parametrize("ranked", [3, 30, 100])
async def test_filtered_list_is_the_model_ranking_restricted(
    client: httpx.AsyncClient, ranked: int
) -> None:
    # The cached ranked list: too short (the catalog is scored), long enough, every item.
    client.app.state.services.encoder.ranked_items = ranked  # type: ignore[attr-defined]
    user = f"fay-{ranked}"
    await post_history(client, user, HISTORY)
    for model in ("mf", "sasrec"):
        everything = await recommend(client, user_id=user, model=model, k=55)  # every unseen
        expected = [i for i in everything if number(i) % 3 == 2][:6]
        assert await recommend(client, user_id=user, model=model, k=6, category="bags") == expected


async def test_backfill_from_popular_matching_items(client: httpx.AsyncClient) -> None:
    hats = [{"item_id": f"hat-{n}", "categories": ["hats"], "price": 5.0} for n in range(6)]
    assert (await client.put("/items", json={"items": hats})).status_code == 200
    await post_history(client, "ann", ["hat-4", "hat-2", "sku-7"])
    await post_history(client, "ben", ["hat-4", "sku-8"])
    await client.app.state.services.catalog.refresh_now()  # type: ignore[attr-defined]
    # mf knows no hat: its list is empty, popular hats come first (hat-4 is the most popular),
    # then the other matching items: k items, since k active unseen items match.
    got = await recommend(client, category="hats")
    assert got[:2] == ["hat-4", "hat-2"] and len(got) == 5
    assert set(got) <= {f"hat-{n}" for n in range(6)}
    unknown = ids(await client.get("/recommend", params={"user_id": "zoe", "category": "hats"}))
    assert unknown[:2] == ["hat-4", "hat-2"] and len(unknown) == 6


async def test_a_filter_that_matches_nothing_is_an_empty_list(client: httpx.AsyncClient) -> None:
    response = await client.get(
        "/recommend", params={"user_id": "eve", "category": "no-such", "model": "sasrec"}
    )
    assert response.status_code == 200 and response.json()["items"] == []
    assert await recommend(client, price_min=1000) == []
    assert await recommend(client, **{"attr.colour": "red"}) == []


async def test_bad_filters_are_422s_naming_the_parameter(client: httpx.AsyncClient) -> None:
    cases = [
        ({"price_min": "-1"}, ["query", "price_min"]),
        ({"price_max": "cheap"}, ["query", "price_max"]),
        ({"price_min": "5", "price_max": "1"}, ["query", "price_min"]),
        ({"category": ""}, ["query", "category", 0]),
    ]
    for params, loc in cases:
        response = await client.get("/recommend", params={"user_id": "eve", **params})
        assert response.status_code == 422, response.text
        assert response.json()["detail"][0]["loc"] == loc
    body = {"user_id": "eve", "filter": {"price": {"min": -3}}}
    response = await client.post("/recommend", json=body)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "filter", "price", "min"]
    body = {"user_id": "eve", "filter": {"brand": ["acme"]}}
    response = await client.post("/recommend", json=body)
    assert response.json()["detail"][0]["loc"] == ["body", "filter", "brand"]


async def test_similar_items_and_compare_take_filters(client: httpx.AsyncClient) -> None:
    response = await client.get("/items/sku-3/similar", params={"k": 6, "category": "bags"})
    similar = [item["item_id"] for item in response.json()["items"]]
    assert len(similar) == 6 and all(number(i) % 3 == 2 for i in similar)
    params = {"user_id": "eve", "k": 4, "attr.brand": "zeta"}
    body = (await client.get("/compare", params=params)).json()
    for listed in body["models"]:
        assert len(listed["items"]) == 4
        assert all(number(item["item_id"]) % 2 == 1 for item in listed["items"])


async def put_rule(client: httpx.AsyncClient, name: str, body: dict[str, Any]) -> httpx.Response:
    """PUT /rules/{name} with the admin key."""
    return await client.put(f"/rules/{name}", json=body, headers=ADMIN)


async def test_a_boost_reorders_at_once(client: httpx.AsyncClient) -> None:
    plain = await recommend(client, k=8)
    boost = {"attribute": "brand", "value": "acme", "multiplier": 1000}
    assert (await put_rule(client, "acme", {"boosts": [boost]})).status_code == 200
    boosted = await recommend(client, k=8)
    assert all(number(i) % 2 == 0 for i in boosted)
    demote = {"boosts": [{**boost, "multiplier": 0.001}]}
    assert (await put_rule(client, "acme", demote)).status_code == 200
    demoted = await recommend(client, k=8)
    assert all(number(i) % 2 == 1 for i in demoted)
    body = (await client.get("/recommend", params={"user_id": "eve", "k": 8})).json()
    scores = [item["score"] for item in body["items"]]
    assert scores == sorted(scores, reverse=True)
    # A category boost, limited to one kind, with a filter on another: the filter still holds.
    by_kind = {"boosts": [{"category": "bags", "multiplier": 1000}]}
    assert (await put_rule(client, "acme", by_kind)).status_code == 200
    assert all(number(i) % 3 == 2 for i in await recommend(client, k=8))
    assert all(number(i) % 3 == 0 for i in await recommend(client, category="shoes/running"))
    assert (await client.delete("/rules/acme", headers=ADMIN)).status_code == 200
    assert await recommend(client, k=8) == plain


async def test_pins_take_their_position(client: httpx.AsyncClient) -> None:
    plain = await recommend(client)
    pinned = next(f"sku-{n}" for n in range(59, 5, -1) if f"sku-{n}" not in plain)
    rule = {"pins": [{"item_id": pinned, "position": 2}, {"item_id": "sku-1", "position": 1}]}
    assert (await put_rule(client, "pins", rule)).status_code == 200
    got = await recommend(client)
    assert got[1] == pinned and "sku-1" not in got  # sku-1 is in eve's history
    assert [i for i in got if i != pinned] == plain[:4]
    kind = KINDS[number(pinned) % 3]
    other = next(k for k in KINDS if not k.startswith(kind.split("/")[0]))
    assert pinned not in await recommend(client, category=other)  # refused by the filter
    assert (await recommend(client, category=kind))[1] == pinned
    await client.put("/items", json={"items": [{**sku(number(pinned)), "active": False}]})
    assert pinned not in await recommend(client)


async def test_rules_crud_needs_the_admin_key(client: httpx.AsyncClient) -> None:
    body = {"boosts": [{"attribute": "brand", "value": "acme", "multiplier": 1.5}]}
    assert (await client.put("/rules/r1", json=body)).status_code == 401
    wrong = {"X-API-Key": "nope"}
    assert (await client.put("/rules/r1", json=body, headers=wrong)).status_code == 403
    assert (await client.get("/rules")).status_code == 401
    assert (await client.get("/rules/r1", headers=wrong)).status_code == 403
    assert (await client.delete("/rules/r1")).status_code == 401
    response = await put_rule(client, "r1", body)
    stored = response.json()
    assert response.status_code == 200, stored
    assert stored["name"] == "r1" and stored["boosts"][0]["multiplier"] == 1.5
    assert stored["active"] is True and stored["pins"] == [] and stored["updated_at"]
    await put_rule(client, "a0", {"pins": [{"item_id": "sku-9", "position": 3}]})
    listed = (await client.get("/rules", headers=ADMIN)).json()
    assert [rule["name"] for rule in listed["rules"]] == ["a0", "r1"]
    assert (await client.get("/rules/r1", headers=ADMIN)).json() == stored
    assert (await client.delete("/rules/r1", headers=ADMIN)).json()["name"] == "r1"
    assert (await client.get("/rules/r1", headers=ADMIN)).status_code == 404
    assert (await client.delete("/rules/r1", headers=ADMIN)).status_code == 404


async def test_invalid_rules_are_422s_naming_the_field(client: httpx.AsyncClient) -> None:
    cases = [
        ({"boosts": [{"attribute": "brand", "value": "x", "multiplier": -1}]},
         ["body", "boosts", 0, "multiplier"]),
        ({"boosts": [{"attribute": "brand", "multiplier": 2}]}, ["body", "boosts", 0]),
        ({"pins": [{"item_id": "sku-1", "position": 0}]}, ["body", "pins", 0, "position"]),
        ({"pins": [{"item_id": "", "position": 1}]}, ["body", "pins", 0, "item_id"]),
        ({"boost": []}, ["body", "boost"]),
    ]  # fmt: skip
    for body, loc in cases:
        response = await put_rule(client, "bad", body)
        assert response.status_code == 422, response.text
        assert response.json()["detail"][0]["loc"] == loc
    response = await client.put("/rules/bad name", json={}, headers=ADMIN)
    assert response.status_code == 422
    assert (await client.get("/rules/bad", headers=ADMIN)).status_code == 404


async def test_another_replica_applies_rules_on_refresh(
    client: httpx.AsyncClient, serving_settings: Settings
) -> None:
    async with running_app(serving_settings) as other:
        before = ids(await other.get("/recommend", params={"user_id": "eve", "k": 8}))
        boost = {"attribute": "brand", "value": "zeta", "multiplier": 1000}
        await put_rule(client, "zeta", {"boosts": [boost]})
        assert ids(await other.get("/recommend", params={"user_id": "eve", "k": 8})) == before
        assert (await other.post("/models/reload", headers=ADMIN)).status_code == 200
        after = ids(await other.get("/recommend", params={"user_id": "eve", "k": 8}))
        assert all(number(i) % 2 == 1 for i in after)
