"""Dashboard page times on the demo data (make run's models): each /ui page loaded --loads
times (after one warm-up) from a real `recsys serve` process on the embedded default (SQLite,
in-process cache); median and p95 per page against the 300 ms target.

The demo (app/training/demo.py: MovieLens 100K when ../shared/datasets has it, else the
generated shop; popularity, mf, sasrec, content) is trained once into --dir and reused.
Run: .venv/bin/python bench/ui.py [--loads 20] [--dir var/bench-ui] [--screenshot docs/ui.png]
Writes bench/results/ui.json.
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import ROOT, served, write_result

KEY = "bench-admin"
TARGET_MS = 300.0


def prepare(folder: Path) -> dict[str, str]:
    """Migrate the database and train the demo models once; the server's environment."""
    import torch

    from app.config import Settings
    from app.db.migrate import upgrade
    from app.db.session import make_engine, make_sessionmaker
    from app.training.demo import ensure_demo

    torch.set_num_threads(1)
    folder.mkdir(parents=True, exist_ok=True)
    url = f"sqlite+aiosqlite:///{folder / 'recsys.db'}"
    upgrade(url)
    settings = Settings(database_url=url, model_dir=folder / "models", log_level="WARNING")

    async def train() -> None:
        engine = make_engine(url)
        try:
            await ensure_demo(settings, make_sessionmaker(engine))
        finally:
            await engine.dispose()

    asyncio.run(train())
    return {
        "RECSYS_DATABASE_URL": url,
        "RECSYS_MODEL_DIR": str(folder / "models"),
        "RECSYS_ADMIN_KEY": KEY,
        "RECSYS_LOG_LEVEL": "WARNING",
    }


def sample_ids(folder: Path) -> tuple[str, str, list[str]]:
    """A user with many events, one of their items, and a short anonymous history."""
    with sqlite3.connect(folder / "recsys.db") as db:
        user = db.execute(
            "SELECT user_id FROM events GROUP BY user_id ORDER BY count(*) DESC LIMIT 1"
        ).fetchone()[0]
        items = [
            r[0]
            for r in db.execute("SELECT item_id FROM events WHERE user_id = ? LIMIT 5", (user,))
        ]
    return str(user), items[0], items[1:4]


def traffic(client: httpx.Client, user: str, item: str, models: list[str]) -> None:
    """Some requests and events, so the overview's numbers and the report are not empty."""
    for n in range(30):
        client.get("/recommend", params={"user_id": f"{user}" if n % 3 else f"visitor-{n}"})
    event = {"event_id": uuid.uuid4().hex, "user_id": user, "item_id": item, "type": "click"}
    client.post("/events", json={"events": [event]})
    arms = [{"name": f"arm-{m}", "model": m, "weight": 1} for m in models[:2]]
    client.put("/experiments/demo-ab", json={"arms": arms, "status": "running"})
    for n in range(40):
        client.get("/recommend", params={"user_id": f"ab-{n}", "experiment": "demo-ab"})


def time_page(client: httpx.Client, path: str, loads: int) -> dict[str, Any]:
    """Median and p95 wall time of `loads` loads of one page (after a warm-up)."""
    first = client.get(path)
    assert first.status_code == 200, (path, first.status_code, first.text[:300])
    times = []
    for _ in range(loads):
        started = time.perf_counter()
        response = client.get(path)
        times.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, path
    times.sort()
    p95 = times[min(len(times) - 1, round(0.95 * (len(times) - 1)))]
    median = statistics.median(times)
    return {
        "page": path,
        "median_ms": median,
        "p95_ms": p95,
        "bytes": len(first.content),
        "within_target": p95 <= TARGET_MS,
    }


def screenshot(base: str, path: str, out: Path) -> None:
    """The README's picture: the page in headless Chromium, logged in with the key."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--window-size=1500,1100",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    try:
        driver.get(f"{base}/ui/login")
        driver.find_element(By.ID, "key").send_keys(KEY)
        driver.find_element(By.ID, "login").click()
        time.sleep(0.5)
        driver.get(base + path)
        out.parent.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(out))
    finally:
        driver.quit()


def main() -> None:
    """Prepare, serve, load each page, print the table, write the result."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--loads", type=int, default=20)
    parser.add_argument("--dir", type=Path, default=ROOT / "var" / "bench-ui")
    parser.add_argument("--screenshot", type=Path, default=None, help="save the Compare page here")
    args = parser.parse_args()
    env = prepare(args.dir)
    user, item, history = sample_ids(args.dir)
    with (
        served(env) as (base, _),
        httpx.Client(base_url=base, headers={"X-API-Key": KEY}, timeout=30) as client,
    ):
        models = sorted(m["name"] for m in client.get("/models").json()["models"])
        traffic(client, user, item, models)
        pages = [
            "/ui",
            f"/ui/compare?user_id={quote(user)}&k=10",
            f"/ui/compare?history={quote(','.join(history))}&k=10",
            f"/ui/items/{quote(item)}",
            "/ui/experiments?name=demo-ab",
            "/ui/models",
        ]
        rows = [time_page(client, page, args.loads) for page in pages]
        if args.screenshot:
            screenshot(
                base,
                f"/ui/compare?user_id={quote(user)}&k=8&models=mf&models=sasrec&models=content",
                args.screenshot,
            )
    print(f"| page | median ms | p95 ms | KB | ≤ {TARGET_MS:.0f} ms |")
    print("|---|---|---|---|---|")
    for r in rows:
        ok = "yes" if r["within_target"] else "NO"
        kb = r["bytes"] / 1024
        print(f"| `{r['page']}` | {r['median_ms']:.1f} | {r['p95_ms']:.1f} | {kb:.1f} | {ok} |")
    path = write_result(
        "ui",
        {
            "setup": "recsys serve (1 worker), SQLite + in-process cache, demo models "
            f"{models}; {args.loads} loads per page after one warm-up, sequential, X-API-Key",
            "target_ms": TARGET_MS,
            "models": models,
            "pages": rows,
        },
    )
    print(f"wrote {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
