"""Input the fuzzer found answered 500: bodies that are not UTF-8 JSON (now 400), NUL characters
and unpaired surrogates in strings (now 422 naming the field; Postgres stores neither), on the
real Postgres + Redis and on the embedded default."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest

from app.config import Settings
from app.domain import ID_LEN
from tests.app.api.test_events import event, stored_events
from tests.app.serving_fixtures import ids, post_history
from tests.conftest import running_app

NUL, SURROGATE = "\x00", "\ud800"
JSON = {"content-type": "application/json"}
BODY_ROUTES = [("POST", "/events"), ("PUT", "/items"), ("POST", "/recommend")]
NESTED = b"[" * 100_000 + b"]" * 100_000


async def send(client: httpx.AsyncClient, method: str, path: str, body: Any) -> httpx.Response:
    """The body as ASCII JSON: NUL and a lone surrogate travel as their escapes, as sent."""
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return await client.request(method, path, content=content, headers=JSON)


@pytest.mark.parametrize(
    "body",
    [b"\xffX", b'{"events": [{"user_id": "\xff"}]}', b"{not json", b"[1,", NESTED],
    ids=["not utf-8", "not utf-8 in a string", "not json", "cut short", "too deep"],
)
@pytest.mark.parametrize(("method", "path"), BODY_ROUTES)
async def test_a_body_that_is_not_json_is_400(
    client: httpx.AsyncClient, method: str, path: str, body: bytes
) -> None:
    response = await send(client, method, path, body)
    assert response.status_code == 400, response.text
    assert response.json()["detail"]  # a JSON error, never the body echoed as bytes
    assert await stored_events(client) == []


async def test_a_malformed_event_batch_says_why(client: httpx.AsyncClient) -> None:
    (error,) = (await send(client, "POST", "/events", b"\xffX")).json()["detail"]
    assert error["loc"] == ["body"] and error["type"] == "json_invalid"
    assert error["msg"] == "the body is not UTF-8: invalid start byte at byte 0"
    (error,) = (await send(client, "POST", "/events", b'{"events": [}')).json()["detail"]
    assert error["loc"] == ["body"] and "line 1 column 13" in error["msg"]
    assert (await send(client, "POST", "/events", b"")).status_code == 400
    metrics = (await client.get("/metrics")).text
    assert 'recsys_events_rejected_total{reason="malformed"} 3.0' in metrics


EVENT_FIELDS = ["event_id", "user_id", "item_id", "recommendation_id"]


@pytest.mark.parametrize("bad", [f"a{NUL}b", NUL, SURROGATE, f"x{SURROGATE}y", "\udc00"])
@pytest.mark.parametrize("field", EVENT_FIELDS)
async def test_bad_text_in_an_event_is_422_and_stores_nothing(
    client: httpx.AsyncClient, field: str, bad: str
) -> None:
    batch = [event(), event(), {**event(), field: bad}]
    response = await send(client, "POST", "/events", {"events": batch})
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"] == ["body", "events", 2, field]
    assert await stored_events(client) == []


async def test_an_escaped_surrogate_pair_is_one_character(client: httpx.AsyncClient) -> None:
    """Only unpaired surrogates are refused: \\ud83d\\ude00 is an emoji, stored like any id."""
    response = await send(client, "POST", "/events", {"events": [event(user="u😀")]})
    assert response.json() == {"accepted": 1, "duplicates": 0}
    assert [row[1] for row in await stored_events(client)] == ["u😀"]


RECOMMEND_BODIES: list[tuple[dict[str, Any], list[Any]]] = [
    ({"user_id": f"a{NUL}"}, ["user_id"]),
    ({"user_id": SURROGATE}, ["user_id"]),
    ({"user_id": "a", "model": NUL}, ["model"]),
    ({"user_id": "a", "experiment": f"e{NUL}"}, ["experiment"]),
    ({"user_id": "a", "model": SURROGATE}, ["model"]),
    ({"user_id": "a", "exclude": ["ok", NUL]}, ["exclude", 1]),
    ({"user_id": "a", "history": [f"i{NUL}"]}, ["history", 0, "item_id"]),
    ({"user_id": "a", "history": [SURROGATE]}, ["history", 0, "item_id"]),
    ({"user_id": ""}, ["user_id"]),
    ({"user_id": "u" * (ID_LEN + 1)}, ["user_id"]),
    ({"user_id": "a", "k": 0}, ["k"]),
    ({"user_id": "a", "k": -5}, ["k"]),
    ({"user_id": "a", "k": 10**30}, ["k"]),
]


@pytest.mark.parametrize(("body", "where"), RECOMMEND_BODIES)
async def test_bad_recommend_body_is_422(
    client: httpx.AsyncClient, body: dict[str, Any], where: list[Any]
) -> None:
    response = await send(client, "POST", "/recommend", body)
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"] == ["body", *where]


QUERIES: list[tuple[str, list[str]]] = [
    ("/recommend?user_id=a%00", ["query", "user_id"]),
    ("/recommend?user_id=a&model=%00", ["query", "model"]),
    ("/recommend?user_id=a&experiment=x%00", ["query", "experiment"]),
    ("/recommend?user_id=a&exclude=%00", ["query", "exclude", 0]),
    ("/recommend?user_id=", ["query", "user_id"]),
    (f"/recommend?user_id={'u' * (ID_LEN + 1)}", ["query", "user_id"]),
    ("/recommend?user_id=a&k=-1", ["query", "k"]),
    ("/recommend?user_id=a&k=100000000000000000000000000", ["query", "k"]),
    ("/compare?user_id=a%00", ["query", "user_id"]),
    ("/items/a%00/similar", ["path", "item_id"]),
    ("/items/a/similar?model=%00", ["query", "model"]),
]


@pytest.mark.parametrize(("url", "where"), QUERIES)
async def test_bad_query_and_path_parameters_are_422(
    client: httpx.AsyncClient, url: str, where: list[str]
) -> None:
    response = await client.get(url)
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"] == where


async def test_erasing_a_user_id_with_nul_is_422(client: httpx.AsyncClient) -> None:
    response = await client.delete("/users/a%00b")
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"] == ["path", "user_id"]


@pytest.mark.parametrize(
    ("body", "where"),
    [
        ({"arms": [{"name": f"a{NUL}", "model": "mf", "weight": 1}]}, ["arms", 0, "name"]),
        ({"arms": [{"name": "a", "model": NUL, "weight": 1}]}, ["arms", 0, "model"]),
        ({"arms": [{"name": SURROGATE, "model": "mf", "weight": 1}]}, ["arms", 0, "name"]),
        ({"arms": [{"name": "a", "model": "mf", "weight": 1}], "salt": NUL}, ["salt"]),
    ],
)
async def test_bad_text_in_an_experiment_is_422(
    client: httpx.AsyncClient, body: dict[str, Any], where: list[Any]
) -> None:
    response = await send(client, "PUT", "/experiments/x", body)
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"] == ["body", *where]


async def test_ids_of_the_longest_length_are_stored(client: httpx.AsyncClient) -> None:
    longest = {"event_id": "e" * ID_LEN, "user_id": "u" * ID_LEN, "item_id": "i" * ID_LEN}
    response = await send(client, "POST", "/events", {"events": [{**longest, "type": "view"}]})
    assert response.json() == {"accepted": 1, "duplicates": 0}
    assert await stored_events(client) == [tuple(longest.values())]


async def test_the_longest_user_id_gets_a_list(serving_settings: Settings) -> None:
    """Through the cache's keys and the history read: the model's list, past what it saw."""
    user, seen = "u" * ID_LEN, [f"sku-{n}" for n in range(3)]
    async with running_app(serving_settings) as client:
        await post_history(client, user, seen)
        params: dict[str, Any] = {"user_id": user, "k": 1000, "model": "sasrec"}
        items = ids(await client.get("/recommend", params=params))
        assert items and not set(items) & set(seen)
        body = {"user_id": user, "k": 5, "model": "mf", "exclude": ["x" * ID_LEN]}
        assert len(ids(await send(client, "POST", "/recommend", body))) == 5


async def test_a_conflict_is_a_422_shaped_as_documented(client: httpx.AsyncClient) -> None:
    """Every 422 is a list of errors with loc and msg (the OpenAPI schema says so), a flow's
    conflict too: schemathesis checks answers against the schema."""
    body = {"arms": [{"name": "a", "model": "no-such-model", "weight": 1}]}
    response = await send(client, "PUT", "/experiments/x", body)
    assert response.status_code == 422
    (error,) = response.json()["detail"]
    assert error["loc"] == ["body", "arms"] and "no-such-model" in error["msg"]


async def test_an_erasure_receipt_time_is_rfc_3339(client: httpx.AsyncClient) -> None:
    """Found by make fuzz on SQLite, which hands back naive times: the documented date-time
    format needs the offset."""
    assert (await client.delete("/users/eve")).status_code == 200
    erased_at = (await client.get("/users/eve/erasure")).json()["erased_at"]
    assert datetime.fromisoformat(erased_at).utcoffset() == timedelta(0)
