"""API keys over HTTP (read, write, admin, metrics), paths only for the admin key, and CORS."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx

from app.config import PROJECT_ROOT, Settings
from tests.conftest import running_app

READ, WRITE, ADMIN, METRICS = "r-secret", "w-secret", "a-secret", "m-secret"
# Every read route: each needs the read key once one is set.
READS = [
    ("GET", "/recommend?user_id=u"),
    ("POST", "/recommend"),
    ("GET", "/compare?user_id=u"),
    ("GET", "/compare/offline"),
    ("GET", "/items/i1"),
    ("GET", "/items/i1/similar"),
    ("GET", "/models"),
]


def keyed(settings: Settings) -> Settings:
    """The deployment with all four keys set and no text encoder to load."""
    settings.read_key, settings.write_key = READ, WRITE
    settings.admin_key, settings.metrics_key = ADMIN, METRICS
    settings.encode_catalog = False
    return settings


async def call(client: httpx.AsyncClient, method: str, url: str, key: str | None) -> httpx.Response:
    """One request, with `key` as X-API-Key when given."""
    headers = {"X-API-Key": key} if key else {}
    body = {"user_id": "u"} if method == "POST" else None
    return await client.request(method, url, json=body, headers=headers)


async def test_reads_need_the_read_key(settings: Settings) -> None:
    async with running_app(keyed(settings)) as client:
        for method, url in READS:
            missing = await call(client, method, url, None)
            assert missing.status_code == 401, (url, missing.text)
            assert "read key (RECSYS_READ_KEY)" in missing.json()["detail"], url
            wrong = await call(client, method, url, "nope")
            assert wrong.status_code == 403 and "read key" in wrong.json()["detail"], url
            # A wrong key of the right length fails the same way (compared in full).
            assert (await call(client, method, url, "x" * len(READ))).status_code == 403
            for key in (READ, WRITE, ADMIN):  # the write and admin keys can read too
                allowed = await call(client, method, url, key)
                assert allowed.status_code in (200, 404), (url, key, allowed.text)


async def test_writes_and_admin_calls_keep_their_keys(settings: Settings) -> None:
    event = {"events": [{"user_id": "u", "item_id": "i1", "type": "view"}]}
    async with running_app(keyed(settings)) as client:
        as_reader = await client.post("/events", json=event, headers={"X-API-Key": READ})
        assert as_reader.status_code == 403 and "write key" in as_reader.json()["detail"]
        missing = await client.post("/events", json=event)
        assert missing.status_code == 401 and "RECSYS_WRITE_KEY" in missing.json()["detail"]
        for key in (WRITE, ADMIN):
            ok = await client.post("/events", json=event, headers={"X-API-Key": key})
            assert ok.status_code == 200, ok.text
        item = {"items": [{"item_id": "i1", "title": "A"}]}
        assert (
            await client.put("/items", json=item, headers={"X-API-Key": READ})
        ).status_code == 403
        for key in (READ, WRITE):
            reload = await client.post("/models/reload", headers={"X-API-Key": key})
            assert reload.status_code == 403 and "admin key" in reload.json()["detail"]
        ok = await client.post("/models/reload", headers={"X-API-Key": ADMIN})
        assert ok.status_code == 200


async def test_probes_stay_open_and_metrics_take_their_key(settings: Settings) -> None:
    async with running_app(keyed(settings)) as client:
        assert (await client.get("/healthz")).status_code == 200
        assert (await client.get("/readyz")).status_code == 200
        missing = await client.get("/metrics")
        assert missing.status_code == 401 and "RECSYS_METRICS_KEY" in missing.json()["detail"]
        assert (await client.get("/metrics", headers={"X-API-Key": READ})).status_code == 403
        for key in (METRICS, ADMIN):
            ok = await client.get("/metrics", headers={"X-API-Key": key})
            assert ok.status_code == 200 and "recsys_http_requests_total" in ok.text
    settings.metrics_key = None  # unset: open, as scrapers expect
    async with running_app(settings) as client:
        assert (await client.get("/metrics")).status_code == 200


async def test_empty_keys_count_as_unset(settings: Settings) -> None:
    # docker-compose passes unset keys as empty strings: they must not lock everyone out.
    settings.read_key, settings.write_key, settings.admin_key = "", "", ""
    settings.encode_catalog = False
    async with running_app(settings) as client:
        event = {"events": [{"user_id": "u", "item_id": "i1", "type": "view"}]}
        assert (await client.post("/events", json=event)).status_code == 200
        assert (await client.get("/recommend", params={"user_id": "u"})).status_code == 200


def broken_checkpoint(model_dir: Path) -> Path:
    """A checkpoint directory the registry refuses (its meta.json lacks every field)."""
    version = model_dir / "mf" / "v1"
    version.mkdir(parents=True)
    (version / "meta.json").write_text(json.dumps({"source": "test"}))
    return version


async def test_paths_only_with_the_admin_key(settings: Settings, trained_models: Path) -> None:
    settings.admin_key, settings.encode_catalog = ADMIN, False
    async with running_app(settings) as client:  # serves nothing yet: refuse one checkpoint
        broken = broken_checkpoint(settings.model_dir)
        await client.post("/models/reload", headers={"X-API-Key": ADMIN})
        for url in ("/models", "/readyz"):
            public = (await client.get(url)).text
            assert str(broken.parent) not in public and "v1" in public, url
        admin = (await client.get("/models", headers={"X-API-Key": ADMIN})).json()
        assert str(broken) in admin["errors"]["mf"]
    settings.model_dir = trained_models
    async with running_app(settings) as client:
        public = (await client.get("/models")).json()["models"]
        assert public and all(model["path"] is None for model in public)
        assert str(trained_models) not in (await client.get("/models")).text
        admin = (await client.get("/models", headers={"X-API-Key": ADMIN})).json()["models"]
        assert all(model["path"].startswith(str(trained_models)) for model in admin)


async def test_cors_preflight_and_answers(settings: Settings) -> None:
    settings.cors_origins, settings.read_key = ("https://shop.example",), READ
    settings.encode_catalog = False
    preflight = {
        "Origin": "https://shop.example",
        "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "x-api-key",
    }
    async with running_app(settings) as client:
        allowed = await client.options("/recommend", headers=preflight)
        assert allowed.status_code == 200
        assert allowed.headers["access-control-allow-origin"] == "https://shop.example"
        assert "x-api-key" in allowed.headers["access-control-allow-headers"].lower()
        assert "GET" in allowed.headers["access-control-allow-methods"]
        other = await client.options(
            "/recommend", headers={**preflight, "Origin": "https://evil.example"}
        )
        assert other.status_code == 400
        assert "access-control-allow-origin" not in other.headers
        answer = await client.get(
            "/recommend",
            params={"user_id": "u"},
            headers={"Origin": "https://shop.example", "X-API-Key": READ},
        )
        assert answer.status_code == 200
        assert answer.headers["access-control-allow-origin"] == "https://shop.example"
        # A refused key still carries the CORS header, so the page can read the 401.
        refused = await client.get(
            "/recommend", params={"user_id": "u"}, headers={"Origin": "https://shop.example"}
        )
        assert refused.status_code == 401
        assert refused.headers["access-control-allow-origin"] == "https://shop.example"


async def test_no_cors_by_default(settings: Settings) -> None:
    settings.encode_catalog = False
    async with running_app(settings) as client:
        preflight = await client.options(
            "/recommend",
            headers={"Origin": "https://shop.example", "Access-Control-Request-Method": "GET"},
        )
        assert preflight.status_code == 405
        assert "access-control-allow-origin" not in preflight.headers


def test_keys_are_never_compared_with_equality() -> None:
    # `==` on secrets returns at the first differing byte; keys go through hmac.compare_digest.
    pattern = re.compile(
        r"(==|!=)\s*[\w.]*(api|read|write|admin|metrics)_key\b"
        r"|\b[\w.]*(api|read|write|admin|metrics)_key\s*(==|!=)"
        r"|x-api-key\"\)\s*(==|!=)"
    )
    found = {
        str(path): pattern.findall(path.read_text())
        for path in sorted((PROJECT_ROOT / "app").rglob("*.py"))
    }
    assert {path: hits for path, hits in found.items() if hits} == {}
