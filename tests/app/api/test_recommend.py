"""/recommend on the real Postgres + Redis and on the embedded default."""

from __future__ import annotations

import httpx
import pytest

from app.config import Settings
from tests.app.serving_fixtures import ids, post_history
from tests.conftest import running_app

GROUP = [f"sku-{n}" for n in range(10)]  # one of the generated shop's item groups, in order


@pytest.fixture
async def client(serving_settings: Settings) -> httpx.AsyncClient:  # type: ignore[override]
    """A client of an app that serves the tiny trained models."""
    async with running_app(serving_settings) as http:
        yield http  # type: ignore[misc]


@pytest.mark.parametrize("model", ["mf", "sasrec", "popularity"])
async def test_known_user_gets_k_unseen_items(client: httpx.AsyncClient, model: str) -> None:
    await post_history(client, "alice", GROUP[:5])
    response = await client.get("/recommend", params={"user_id": "alice", "k": 7, "model": model})
    items = ids(response)
    body = response.json()
    assert len(items) == 7 and len(set(items)) == 7
    assert not set(items) & set(GROUP[:5])
    assert (body["model"], body["model_version"], body["fallback"]) == (model, "v1", None)
    assert len(body["recommendation_id"]) == 32
    scores = [item["score"] for item in body["items"]]
    assert scores == sorted(scores, reverse=True)


async def test_sequence_model_learns_the_next_item(client: httpx.AsyncClient) -> None:
    await post_history(client, "bob", GROUP[2:7])
    top = ids(await client.get("/recommend", params={"user_id": "bob", "k": 3, "model": "sasrec"}))
    assert GROUP[7] in top


async def test_new_event_changes_the_next_list(client: httpx.AsyncClient) -> None:
    await post_history(client, "carol", GROUP[:4])
    params = {"user_id": "carol", "k": 10}
    mf_before = ids(await client.get("/recommend", params={**params, "model": "mf"}))
    seq_before = ids(await client.get("/recommend", params={**params, "model": "sasrec"}))
    await post_history(client, "carol", [mf_before[0]])
    mf_after = ids(await client.get("/recommend", params={**params, "model": "mf"}))
    seq_after = ids(await client.get("/recommend", params={**params, "model": "sasrec"}))
    assert mf_before[0] not in mf_after  # read-your-writes: the item left the list
    assert seq_after != seq_before


async def test_vectors_are_cached_and_dropped_by_events(client: httpx.AsyncClient) -> None:
    cache = client.app.state.cache  # type: ignore[attr-defined]
    await post_history(client, "dave", GROUP[:3])
    await client.get("/recommend", params={"user_id": "dave", "model": "mf"})
    assert (await cache.lookup("dave", "mf:v1")).vector is not None
    assert await cache.get_history("dave") == GROUP[:3]
    await post_history(client, "dave", [GROUP[3]])
    assert (await cache.lookup("dave", "mf:v1")).vector is None
    assert await cache.get_history("dave") == GROUP[:4]
    hits = 'recsys_cache_lookups_total{result="hit"}'
    await client.get("/recommend", params={"user_id": "dave", "model": "mf"})
    await client.get("/recommend", params={"user_id": "dave", "model": "mf"})
    assert f"{hits} 1.0" in (await client.get("/metrics")).text


async def test_unknown_user_gets_popular_items(client: httpx.AsyncClient) -> None:
    await post_history(client, "erin", GROUP[:3])
    await post_history(client, "frank", GROUP[:2])
    await client.app.state.services.catalog.refresh_now()  # type: ignore[attr-defined]
    body = (await client.get("/recommend", params={"user_id": "nobody", "k": 2})).json()
    assert body["fallback"] == "unknown_user"
    assert [i["item_id"] for i in body["items"]] == ["sku-0", "sku-1"]


async def test_exclude_and_inactive_items_are_masked(client: httpx.AsyncClient) -> None:
    await post_history(client, "gina", GROUP[:4])
    params = {"user_id": "gina", "k": 5, "model": "mf"}
    first = ids(await client.get("/recommend", params=params))
    excluded = ids(await client.get("/recommend", params={**params, "exclude": first[:2]}))
    assert not set(first[:2]) & set(excluded)
    await client.put("/items", json={"items": [{"item_id": first[2], "active": False}]})
    assert first[2] not in ids(await client.get("/recommend", params=params))


async def test_k_bounds_and_unknown_model(client: httpx.AsyncClient) -> None:
    for k in (0, 1001, "ten"):
        response = await client.get("/recommend", params={"user_id": "x", "k": k})
        assert response.status_code == 422
        assert response.json()["detail"][0]["loc"] == ["query", "k"]
    missing = await client.get("/recommend", params={"user_id": "x", "model": "bert4rec"})
    assert missing.status_code == 404 and "bert4rec" in missing.json()["detail"]
    assert (await client.get("/recommend")).status_code == 422


async def test_k_beyond_the_catalog_returns_every_unseen_item(client: httpx.AsyncClient) -> None:
    await post_history(client, "hank", GROUP[:5])
    items = ids(
        await client.get("/recommend", params={"user_id": "hank", "k": 1000, "model": "mf"})
    )
    assert len(items) == 60 - 5 and len(set(items)) == len(items)


async def test_anonymous_history_in_post(client: httpx.AsyncClient) -> None:
    body = {"user_id": "anon-1", "k": 4, "model": "sasrec", "history": GROUP[1:6]}
    items = ids(await client.post("/recommend", json=body))
    assert GROUP[6] in items and not set(items) & set(GROUP[1:6])
    cache = client.app.state.cache  # type: ignore[attr-defined]
    assert (await cache.lookup("anon-1", "sasrec:v1")).vector is None
    bad = await client.post("/recommend", json={"user_id": "a", "k": 5, "history": "sku-1"})
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["body", "history"]


async def test_models_endpoint(client: httpx.AsyncClient) -> None:
    body = (await client.get("/models")).json()
    assert {m["name"] for m in body["models"]} == {"mf", "popularity", "sasrec"}
    assert body["default"] == "sasrec"
    sasrec = next(m for m in body["models"] if m["name"] == "sasrec")
    assert sasrec["version"] == "v1" and "ndcg@10" in sasrec["metrics"]["val"]
    ready = (await client.get("/readyz")).json()
    assert ready["models"]["loaded"] == {"mf": "v1", "popularity": "v1", "sasrec": "v1"}


async def test_compare(client: httpx.AsyncClient) -> None:
    await post_history(client, "ivy", GROUP[:5])
    body = (await client.get("/compare", params={"user_id": "ivy", "k": 5})).json()
    assert [m["model"] for m in body["models"]] == ["mf", "popularity", "sasrec"]
    for entry in body["models"]:
        assert len(entry["items"]) == 5 and entry["latency_ms"] > 0
        assert "ndcg@10" in entry["offline_metrics"]["test"]
    pairs = {(o["a"], o["b"]): o for o in body["overlap"]}
    assert set(pairs) == {("mf", "popularity"), ("mf", "sasrec"), ("popularity", "sasrec")}
    assert all(0 <= o["jaccard"] <= 1 and 0 <= o["rbo"] <= 1 for o in pairs.values())
    named = await client.get("/compare", params={"user_id": "ivy", "models": "mf,sasrec"})
    assert [m["model"] for m in named.json()["models"]] == ["mf", "sasrec"]
    assert (
        await client.get("/compare", params={"user_id": "ivy", "models": "x"})
    ).status_code == 404
    offline = (await client.get("/compare/offline")).json()["models"]
    assert [row["model"] for row in offline] == ["mf", "popularity", "sasrec"]


async def test_erase_user(client: httpx.AsyncClient) -> None:
    await post_history(client, "jill", GROUP[:3])
    await client.get("/recommend", params={"user_id": "jill", "model": "mf"})
    erased = (await client.delete("/users/jill")).json()
    assert erased["events"] == 3
    body = (await client.get("/recommend", params={"user_id": "jill", "model": "mf"})).json()
    assert body["fallback"] == "unknown_user"


async def test_ranked_list_and_catalog_scoring_agree(serving_settings: Settings) -> None:
    # A 3-item cached list: k=2 is answered from it; k=10, or k=2 after excluding two of its
    # items, needs the whole catalog scored. Both paths must give the same ranking.
    settings = serving_settings.model_copy(update={"ranked_items": 3})
    async with running_app(settings) as client:
        await post_history(client, "ivy", GROUP[:4])
        params = {"user_id": "ivy", "model": "mf"}
        full = ids(await client.get("/recommend", params={**params, "k": 10}))
        assert ids(await client.get("/recommend", params={**params, "k": 2})) == full[:2]
        excluded = ids(
            await client.get("/recommend", params={**params, "k": 2, "exclude": full[:2]})
        )
        assert excluded == full[2:4]


async def test_get_parameters_are_documented(client: httpx.AsyncClient) -> None:
    # The route parses its own query string; the OpenAPI document must still list it.
    spec = (await client.get("/openapi.json")).json()
    params = {p["name"]: p for p in spec["paths"]["/recommend"]["get"]["parameters"]}
    assert {"repeats"} <= set(params)  # issue 14: seen items back
    assert {"user_id", "k", "model", "experiment", "exclude", "explain"} <= set(params)
    assert params["user_id"]["required"] and params["k"]["schema"]["maximum"] == 1000


async def test_comma_separated_exclude(client: httpx.AsyncClient) -> None:
    await post_history(client, "jim", GROUP[:4])
    params = {"user_id": "jim", "k": 5, "model": "mf"}
    first = ids(await client.get("/recommend", params=params))
    rest = ids(await client.get("/recommend", params={**params, "exclude": ",".join(first[:2])}))
    assert not set(first[:2]) & set(rest) and rest[:3] == first[2:5]
