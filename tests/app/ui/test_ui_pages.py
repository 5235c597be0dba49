"""The dashboard over HTTP: the key or the login cookie opens it, every page renders on an
empty database and with served models, bad input is a readable 4xx page, writes need the key
and the session's form token."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from app.config import Settings
from tests.app.serving_fixtures import post_history
from tests.conftest import running_app

ADMIN = "a-secret"
PAGES = ["/ui", "/ui/compare", "/ui/experiments", "/ui/models", "/ui/items/sku-1"]
HTML = {"Accept": "text/html"}
KEY = {"X-API-Key": ADMIN}


@pytest.fixture
def empty(sqlite_url: str, tmp_path: Path) -> Settings:
    """The embedded default with an admin key, no model, nothing stored."""
    return Settings(
        database_url=sqlite_url,
        model_dir=tmp_path / "models",
        admin_key=ADMIN,
        encode_catalog=False,
        log_level="WARNING",
        compare_dir=None,
    )


def token_of(page: httpx.Response) -> str:
    """The form token a page carries."""
    found = re.search(r'name="token" value="([0-9a-f]*)"', page.text)
    assert found, page.text[:500]
    return found[1]


async def login(client: httpx.AsyncClient) -> None:
    """Log in through the form; the client keeps the cookie."""
    response = await client.post("/ui/login", data={"key": ADMIN, "next": "/ui/models"})
    assert response.status_code == 303 and response.headers["location"] == "/ui/models"
    cookie = response.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "path=/ui" in cookie


async def test_without_the_key_browsers_go_to_login_and_others_get_401(empty: Settings) -> None:
    async with running_app(empty) as client:
        for page in PAGES:
            browser = await client.get(page, headers=HTML)
            assert browser.status_code == 303, page
            assert browser.headers["location"].startswith("/ui/login?next=%2Fui")
            plain = await client.get(page)
            assert plain.status_code == 401 and "admin key" in plain.json()["detail"]
        wrong = await client.get("/ui", headers={"X-API-Key": "nope"})
        assert wrong.status_code == 403
        form = await client.get("/ui/login")
        assert form.status_code == 200 and 'name="key"' in form.text


async def test_header_key_opens_every_page_on_an_empty_database(empty: Settings) -> None:
    async with running_app(empty) as client:
        for page in PAGES:
            response = await client.get(page, headers=KEY)
            assert response.status_code in (200, 404), (page, response.text[:300])
            assert "text/html" in response.headers["content-type"]
        overview = (await client.get("/ui", headers=KEY)).text
        assert 'id="no-models"' in overview and 'id="no-events"' in overview
        assert "No model is loaded" in (await client.get("/ui/compare", headers=KEY)).text
        assert 'id="no-experiments"' in (await client.get("/ui/experiments", headers=KEY)).text
        models = (await client.get("/ui/models", headers=KEY)).text
        assert 'id="no-versions"' in models and 'id="no-offline"' in models
        item = await client.get("/ui/items/sku-1", headers=KEY)
        assert item.status_code == 404 and 'id="unknown"' in item.text


async def test_login_sets_a_cookie_and_logout_drops_it(empty: Settings) -> None:
    async with running_app(empty) as client:
        wrong = await client.post("/ui/login", data={"key": "nope"})
        assert wrong.status_code == 401 and "not the admin key" in wrong.text
        await login(client)
        assert (await client.get("/ui/models", headers=HTML)).status_code == 200
        outside = await client.post("/ui/login", data={"key": ADMIN, "next": "//evil.example"})
        assert outside.headers["location"] == "/ui"
        out = await client.get("/ui/logout")
        assert out.status_code == 303
        client.cookies.clear()  # httpx keeps an expired cookie for /ui only; be explicit
        assert (await client.get("/ui", headers=HTML)).status_code == 303
        client.cookies.set("recsys_ui", "9999999999.abc.def", path="/ui")
        assert (await client.get("/ui")).status_code == 401


async def test_writes_need_the_key_and_the_form_token(empty: Settings) -> None:
    form = {"name": "exp", "arm_name_0": "a", "arm_model_0": "mf", "arm_weight_0": "1"}
    async with running_app(empty) as client:
        refused = await client.post("/ui/experiments", data=form)
        assert refused.status_code == 401
        await login(client)
        no_token = await client.post("/ui/experiments", data=form)
        assert no_token.status_code == 403 and "stale" in no_token.text
        bad = await client.post("/ui/experiments", data={**form, "token": "0" * 64})
        assert bad.status_code == 403
        promote = await client.post("/ui/models/promote", data={"version": "v1"})
        assert promote.status_code == 403


async def test_bad_form_input_is_a_readable_error_page(empty: Settings) -> None:
    async with running_app(empty) as client:
        await login(client)
        token = token_of(await client.get("/ui/experiments"))
        cases = [
            ({"name": "bad name!", "arm_name_0": "a", "arm_model_0": "mf"}, "name"),
            (
                {"name": "e", "arm_name_0": "a", "arm_model_0": "mf", "arm_weight_0": "x"},
                "arm 1 weight",
            ),
            (
                {"name": "e", "arm_name_0": "a", "arm_model_0": "mf", "arm_weight_0": "-1"},
                "arm 1 weight",
            ),
            ({"name": "e"}, "arms"),
            ({"name": "e", "arm_name_0": "a", "arm_model_0": "mf"}, "not loaded"),
        ]
        for fields, says in cases:
            response = await client.post("/ui/experiments", data={**fields, "token": token})
            assert response.status_code == 422, (fields, response.text[:300])
            assert 'id="problems"' in response.text and says in response.text, fields
        for query in ("k=abc", "k=0", "user_id=u&history=a", "history=" + "a," * 300):
            response = await client.get(f"/ui/compare?{query}")
            assert response.status_code == 422 and 'id="problems"' in response.text, query
        status = await client.post(
            "/ui/experiments/nope/status", data={"status": "x", "token": token}
        )
        assert status.status_code == 422
        missing = await client.post(
            "/ui/experiments/nope/status", data={"status": "stopped", "token": token}
        )
        assert missing.status_code == 404 and "not found" in missing.text
        promote = await client.post("/ui/models/promote", data={"version": "v9", "token": token})
        assert promote.status_code == 404 and "no registered version" in promote.text
        rollback = await client.post("/ui/models/rollback", data={"model": "mf", "token": token})
        assert rollback.status_code == 404
        confirm = await client.get("/ui/models/confirm?action=drop&target=x")
        assert confirm.status_code == 422
        assert (await client.get("/ui/plots/..%2Fsecret.png")).status_code == 404


async def test_open_dashboard_without_an_admin_key(empty: Settings) -> None:
    empty.admin_key = None
    async with running_app(empty) as client:
        page = await client.get("/ui/experiments")
        assert page.status_code == 200 and "open: no admin key set" in page.text
        token = token_of(page)
        assert token and "recsys_ui" in page.headers["set-cookie"]
        form = {"name": "e", "arm_name_0": "a", "arm_model_0": "mf", "token": "0" * 64}
        assert (await client.post("/ui/experiments", data=form)).status_code == 403
        login = await client.get("/ui/login")
        assert "dashboard is open" in login.text


async def test_pages_with_served_models(serving_settings: Settings) -> None:
    serving_settings.encode_catalog = False
    async with running_app(serving_settings) as client:
        await client.put(
            "/items",
            json={"items": [{"item_id": "sku-1", "title": "Blue mug 1", "categories": ["mugs"]}]},
        )
        await post_history(client, "shopper", ["sku-1", "sku-2", "sku-3"])
        await client.get("/recommend?user_id=shopper")
        overview = await client.get("/ui")
        assert (
            overview.status_code == 200
            and "sasrec" in overview.text
            and "no-models" not in overview.text
        )
        compare = await client.get("/ui/compare?user_id=shopper&models=mf&models=sasrec")
        assert compare.status_code == 200
        assert compare.text.count('class="column model"') == 2 and "Blue mug 1" in compare.text
        assert 'id="overlap"' in compare.text and "ms</span>" in compare.text
        anonymous = await client.get("/ui/compare?history=sku-1,sku-2&k=5")
        assert anonymous.status_code == 200 and anonymous.text.count('class="column model"') == 3
        item = await client.get("/ui/items/sku-1")
        assert item.status_code == 200 and "Blue mug 1" in item.text and "shopper" in item.text
        token = token_of(await client.get("/ui/experiments"))
        form = {
            "name": "ab",
            "arm_name_0": "control",
            "arm_model_0": "mf",
            "arm_name_1": "treat",
            "arm_model_1": "sasrec",
            "token": token,
        }
        saved = await client.post("/ui/experiments", data=form)
        assert (
            saved.status_code == 303
            and saved.headers["location"] == "/ui/experiments?name=ab&done=saved"
        )
        report = await client.get("/ui/experiments?name=ab")
        assert "<svg" in report.text and 'id="srm"' in report.text
        stop = await client.post(
            "/ui/experiments/ab/status", data={"status": "stopped", "token": token}
        )
        assert stop.status_code == 303
        assert client.app.state.services.experiments.experiments["ab"].status == "stopped"  # type: ignore[attr-defined]
