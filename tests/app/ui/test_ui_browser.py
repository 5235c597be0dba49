"""The dashboard in a real browser: headless Chromium (Debian's chromium + chromium-driver)
against a uvicorn server with trained models and a catalog. Screenshots go to
$RECSYS_TEST_ARTIFACTS (else the test's temp directory), never the repo."""

from __future__ import annotations

import asyncio
import os
import shutil
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from app.config import Settings
from app.db import repo
from app.db.migrate import upgrade
from app.db.session import make_engine, make_sessionmaker
from app.db.tables import ModelVersion
from app.main import create_app
from app.training.demo import synthetic_catalog
from tests.app.serving_fixtures import events_for
from tests.conftest import free_port

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None or DRIVER is None,
    reason="needs Debian's chromium and chromium-driver (.ci/run installs them)",
)
ADMIN = "browser-secret"
USER = "shopper"


async def _register(settings: Settings, models: Path) -> None:
    """mf v1 active (promoted once), mf v2 a candidate the gate held back."""
    engine = make_engine(settings.database_url)
    try:
        async with make_sessionmaker(engine)() as session:
            now = datetime.now(UTC)
            for version, status, reason in (
                ("v1", "active", "first version"),
                ("v2", "candidate", "gate: val ndcg@10 0.0100 < active 0.0200 - 0.001"),
            ):
                row = ModelVersion(
                    model_name="mf",
                    version=version,
                    path=str(models / "mf" / version),
                    status=status,
                    metrics={"val": {"ndcg@10": 0.02 if version == "v1" else 0.01}},
                    reason=reason,
                    promoted_at=now if status == "active" else None,
                )
                await repo.add_model_version(session=session, row=row)
    finally:
        await engine.dispose()


class Server:
    """uvicorn serving the app on a free port, in a thread."""

    def __init__(self, settings: Settings) -> None:
        self.url = f"http://127.0.0.1:{free_port()}"
        port = int(self.url.rsplit(":", 1)[1])
        config = uvicorn.Config(create_app(settings), port=port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> Server:
        self.thread.start()
        for _ in range(200):
            if self.server.started:
                return self
            time.sleep(0.05)
        raise RuntimeError("uvicorn did not start")

    def __exit__(self, *_: Any) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def _seed(server: Server) -> None:
    """A catalog with titles and a user's history, through the API."""
    items = [
        {"item_id": c.item_id, "title": c.title, "categories": c.categories}
        for c in synthetic_catalog(items=60, groups=3)
    ]
    with httpx.Client(base_url=server.url, headers={"X-API-Key": ADMIN}) as client:
        assert client.put("/items", json={"items": items}).status_code == 200
        body = events_for(USER, ["sku-1", "sku-2", "sku-3", "sku-4"])
        assert client.post("/events", json=body).status_code == 200
        assert client.post("/models/reload").status_code == 200  # the catalog's titles in memory


@pytest.fixture(scope="module")
def server(trained_models: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The service on SQLite with popularity, mf (v1 active, v2 candidate) and sasrec."""
    root = tmp_path_factory.mktemp("ui-browser")
    models = root / "models"
    shutil.copytree(trained_models, models)
    shutil.copytree(models / "mf" / "v1", models / "mf" / "v2")
    url = f"sqlite+aiosqlite:///{root / 'recsys.db'}"
    upgrade(url)
    settings = Settings(
        database_url=url,
        model_dir=models,
        admin_key=ADMIN,
        encode_catalog=False,
        log_level="WARNING",
        refresh_interval_s=3600,
    )
    asyncio.run(_register(settings, models))
    with Server(settings) as running:
        _seed(running)
        yield running


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where screenshots go."""
    folder = os.environ.get("RECSYS_TEST_ARTIFACTS")
    path = Path(folder) / "ui" if folder else tmp_path_factory.mktemp("ui-shots")
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One headless Chromium for the module."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(flag)
    options.add_argument("--window-size=1400,1000")
    driver = webdriver.Chrome(service=Service(str(DRIVER)), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def text(browser: Any) -> str:
    """The page's visible text."""
    from selenium.webdriver.common.by import By

    return str(browser.find_element(By.TAG_NAME, "body").text)


def submit(browser: Any, element: Any) -> None:
    """Click a button or link and wait for the next page to replace this one."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    old = browser.find_element(By.TAG_NAME, "html")
    element.click()
    WebDriverWait(browser, 15).until(expected_conditions.staleness_of(old))


def log_in(browser: Any, server: Server) -> None:
    """Log in through the form, once per module (the browser keeps the cookie)."""
    from selenium.webdriver.common.by import By

    browser.get(f"{server.url}/ui")
    if "/ui/login" not in browser.current_url:
        return
    browser.find_element(By.ID, "key").send_keys(ADMIN)
    submit(browser, browser.find_element(By.ID, "login"))
    assert browser.current_url == f"{server.url}/ui", browser.current_url


def test_write_actions_need_the_key(browser: Any, server: Server) -> None:
    from selenium.webdriver.common.by import By

    browser.delete_all_cookies()
    browser.get(f"{server.url}/ui/models")
    assert "/ui/login?next=%2Fui%2Fmodels" in browser.current_url
    browser.find_element(By.ID, "key").send_keys("wrong")
    submit(browser, browser.find_element(By.ID, "login"))
    assert "not the admin key" in text(browser)
    with httpx.Client(base_url=server.url) as client:
        for path, form in (
            ("/ui/models/promote", {"version": "v2"}),
            ("/ui/models/rollback", {"model": "mf"}),
        ):
            assert client.post(path, data=form).status_code == 401
        keyed = client.post(
            "/ui/models/promote", data={"version": "v2"}, headers={"X-API-Key": "no"}
        )
        assert keyed.status_code == 403
    log_in(browser, server)
    assert "Overview" in text(browser)


def test_each_page_renders_with_real_data(browser: Any, server: Server, artifacts: Path) -> None:
    log_in(browser, server)
    expected = {
        "/ui": ["Loaded models", "sasrec", "mf", "ok"],
        "/ui/items/sku-2": ["Similar items", "group-0", USER],
        "/ui/experiments": ["Create an experiment"],
        "/ui/models": ["Version history", "gate: val ndcg@10", "Promote…"],
    }
    for path, words in expected.items():
        browser.get(server.url + path)
        page = text(browser)
        assert "Internal Server Error" not in page
        for word in words:
            assert word in page, (path, word, page[:800])
        browser.save_screenshot(str(artifacts / f"{path.strip('/').replace('/', '_')}.png"))


def test_compare_shows_titles_and_models_side_by_side(
    browser: Any, server: Server, artifacts: Path
) -> None:
    from selenium.webdriver.common.by import By

    log_in(browser, server)
    browser.get(f"{server.url}/ui/compare?user_id={USER}&models=mf&models=sasrec&k=8")
    columns = browser.find_elements(By.CSS_SELECTOR, "section.column.model")
    assert [c.get_attribute("data-model") for c in columns] == ["mf", "sasrec"]
    first, second = (c.location for c in columns)
    assert first["y"] == second["y"] and first["x"] < second["x"]  # side by side
    titles = [a.text for c in columns for a in c.find_elements(By.CSS_SELECTOR, "li .title a")]
    assert len(titles) == 16 and all(t and not t.startswith("sku-") for t in titles), titles
    assert "ms" in columns[0].find_element(By.CLASS_NAME, "latency").text
    history = browser.find_element(By.ID, "history-column").text
    assert "Recent history" in history and "mug" in history.lower(), history
    browser.save_screenshot(str(artifacts / "compare.png"))


def _confirm(browser: Any, link_css: str) -> str:
    """Click a promote/rollback link, confirm, and return the page's text."""
    from selenium.webdriver.common.by import By

    submit(browser, browser.find_element(By.CSS_SELECTOR, link_css))
    assert "/ui/models/confirm" in browser.current_url
    submit(browser, browser.find_element(By.ID, "confirm"))
    return text(browser)


def _serving(server: Server, name: str) -> str:
    """The version of `name` the service serves now (its JSON API)."""
    with httpx.Client(base_url=server.url) as client:
        models = client.get("/models").json()["models"]
    return next(m["version"] for m in models if m["name"] == name)


def test_promote_and_rollback_through_the_ui(browser: Any, server: Server) -> None:
    log_in(browser, server)
    browser.get(f"{server.url}/ui/models")
    assert _serving(server, "mf") == "v1"
    page = _confirm(browser, 'tr[data-version="v2"] a.promote')
    assert "Version promoted" in page and _serving(server, "mf") == "v2"
    page = _confirm(browser, "#rollback-mf")
    assert "Rolled back" in page and _serving(server, "mf") == "v1"
