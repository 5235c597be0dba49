"""What each dashboard page shows, gathered from the service's own in-process objects (the
registry, the experiment book, the metrics, the serving flows) and the database: no HTTP calls
to itself."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.api.health import database_state
from app.db import dashboard, repo
from app.db.tables import ModelVersion
from app.errors import NotFound
from app.experiments import flows
from app.experiments.book import ExperimentState
from app.serving.compare import compare_models
from app.serving.services import Ask, Services
from app.serving.similar import similar_items
from app.training.promotion import rollback_target
from app.ui.charts import Interval, interval_chart
from app.ui.live import LiveWindow

RECENT = 20  # events listed beside a user's or an item's lists
HEADLINE = ("ndcg@10", "hr@10", "mrr", "coverage@10")  # the offline metrics the pages show
PLOT_NAME = re.compile(r"^[A-Za-z0-9_.-]+\.png$")


def model_rows(services: Services) -> list[dict[str, Any]]:
    """The loaded models: version, size and offline metrics, the default one marked."""
    default = services.registry.default()
    rows = []
    for name, model in sorted(services.registry.models.items()):
        metrics = model.offline_metrics()
        rows.append(
            {
                "name": name,
                "version": model.version,
                "items": len(model.item_ids),
                "loaded_at": model.loaded_at.isoformat(timespec="seconds"),
                "default": default is model,
                "val": metrics.get("val") or {},
                "test": metrics.get("test") or {},
            }
        )
    return rows


async def overview(services: Services, window: LiveWindow) -> dict[str, Any]:
    """Traffic, latency, cache and fallbacks over the window; models; dependency health."""
    settings = services.settings
    database = await database_state(services, settings.db_connect_timeout_s)
    return {
        "live": window.summary(services.metrics),
        "models": model_rows(services),
        "errors": services.registry.errors,
        "database": database,
        "database_kind": services.sessionmaker.kw["bind"].url.get_backend_name(),
        "cache": await services.cache.status(),
        "cache_kind": services.cache.kind,
        "experiments": sorted(services.experiments.experiments.values(), key=lambda s: s.name),
        "has_events": bool(services.catalog.popular),
        "headline": HEADLINE,
    }


def _titles(items: dict[str, Any], item_ids: list[str]) -> dict[str, dict[str, Any]]:
    """Each id's title and categories (None for ids the catalog does not hold)."""
    found = {}
    for item_id in item_ids:
        row = items.get(item_id)
        found[item_id] = {
            "title": row.title if row is not None else None,
            "categories": list(row.categories or []) if row is not None else [],
            "active": row.active if row is not None else True,
        }
    return found


async def compare(
    *,
    session: AsyncSession,
    services: Services,
    user_id: str | None,
    history: tuple[str, ...] | None,
    k: int,
    names: list[str] | None,
) -> dict[str, Any]:
    """Each model's list for the user (or the typed history), side by side, with titles,
    overlap counts and the history the lists were made from."""
    ask = Ask(user_id=user_id or "anonymous", k=k, explain=True, history=history)
    found = await compare_models(ask, names, services)
    counts = Counter(i["item_id"] for m in found["models"] for i in m["items"])
    if history is not None:
        recent: list[dict[str, Any]] = [
            {"item_id": item, "type": "typed", "when": None} for item in history
        ]
    else:
        events = await dashboard.recent_events(session=session, user_id=user_id, limit=RECENT)
        recent = [{"item_id": e.item_id, "type": e.type, "when": e.event_time} for e in events]
    because = [b for m in found["models"] for i in m["items"] for b in i.get("because") or []]
    ids = list(counts) + [r["item_id"] for r in recent] + because
    items = await dashboard.items_by_ids(session=session, item_ids=ids)
    return {
        **found,
        "shared": {item: n for item, n in counts.items() if n > 1},
        "history": recent,
        "catalog": _titles(items, ids),
        "columns": len(found["models"]),
    }


def _similar_lists(item_id: str, services: Services) -> list[dict[str, Any]]:
    """The similar items of each loaded model (or content vectors where it lacks the item)."""
    lists = []
    names: list[str | None] = [*sorted(services.registry.models)] or [None]
    for name in names:
        try:
            lists.append({"asked": name, **similar_items(item_id, 10, name, services)})
        except NotFound as error:
            lists.append({"asked": name, "error": error.detail, "items": []})
    return lists


async def item_page(*, session: AsyncSession, services: Services, item_id: str) -> dict[str, Any]:
    """The catalog entry, its similar items per model, its recent events."""
    entry = await repo.get_item(session=session, item_id=item_id)
    lists = _similar_lists(item_id, services)
    events = await dashboard.recent_events(session=session, item_id=item_id, limit=RECENT)
    ids = [i["item_id"] for lst in lists for i in lst["items"]]
    items = await dashboard.items_by_ids(session=session, item_ids=ids)
    return {
        "item_id": item_id,
        "entry": entry,
        "similar": lists,
        "events": events,
        "catalog": _titles(items, ids),
        "known": entry is not None or bool(events) or any(lst["items"] for lst in lists),
    }


def _rate_rows(report: dict[str, Any], metric: str) -> list[Interval]:
    """Each arm's rate of `metric` with its interval."""
    rows = []
    for arm in report["arms"]:
        value = arm[metric]
        rate = value.get("rate") if metric != "revenue" else value.get("mean")
        ci = value.get("ci95") or [None, None]
        rows.append(Interval(arm["arm"], rate, ci[0], ci[1]))
    return rows


def _lift_rows(report: dict[str, Any]) -> list[Interval]:
    """Each treatment arm's lift over the control, per metric, with its interval."""
    rows = []
    for arm in report["arms"]:
        for metric, lift in (arm.get("vs_control") or {}).items():
            if lift is None:
                rows.append(Interval(f"{arm['arm']} {metric}", None, None, None))
            else:
                low, high = lift["ci95"]
                rows.append(Interval(f"{arm['arm']} {metric}", lift["lift"], low, high))
    return rows


def report_charts(report: dict[str, Any]) -> dict[str, Any]:
    """The report's intervals drawn as SVG: rates per arm, and lifts against the control."""
    charts = {
        metric: interval_chart(_rate_rows(report, metric))
        for metric in ("clicks", "conversions", "revenue")
    }
    lifts = _lift_rows(report)
    return {
        "rates": charts,
        "lifts": interval_chart(lifts, zero=True, percent=True) if lifts else None,
    }


async def experiments_page(
    *, session: AsyncSession, services: Services, selected: str | None
) -> dict[str, Any]:
    """Every stored experiment; the selected one's report with its charts."""
    rows = await repo.all_experiments(session=session)
    states = sorted((ExperimentState.of(row) for row in rows), key=lambda s: s.name)
    chosen = next((s for s in states if s.name == selected), states[0] if states else None)
    report = None
    if chosen is not None:
        report = await flows.report(
            session=session,
            name=chosen.name,
            settings=services.settings,
            sequential=True,
            cuped=True,
        )
    return {
        "experiments": states,
        "chosen": chosen,
        "report": report,
        "charts": report_charts(report) if report else None,
        "loaded": sorted(services.registry.models),
    }


def compare_dir(services: Services) -> Path | None:
    """The offline comparison's result directory, when it holds a compare.json."""
    folder = services.settings.compare_dir
    return folder if folder is not None and (folder / "compare.json").is_file() else None


def offline_comparison(services: Services) -> dict[str, Any] | None:
    """The offline comparison's rows and its plots' names, from compare.json's directory."""
    folder = compare_dir(services)
    if folder is None:
        return None
    try:
        payload = json.loads((folder / "compare.json").read_text())
    except (OSError, ValueError) as error:
        return {"error": f"compare.json unreadable: {error}", "rows": [], "plots": []}
    plots = sorted(p.name for p in folder.iterdir() if PLOT_NAME.match(p.name))
    return {
        "folder": str(folder),
        "dataset": (payload.get("dataset") or {}).get("source"),
        "rows": payload.get("rows") or [],
        "plots": plots,
    }


def plot_path(services: Services, name: str) -> Path:
    """A PNG of the comparison's directory by file name; NotFound for anything else."""
    folder = compare_dir(services)
    if folder is None or not PLOT_NAME.match(name):
        raise NotFound(f"no plot {name!r}")
    path = folder / name
    if not path.is_file() or path.resolve().parent != folder.resolve():
        raise NotFound(f"no plot {name!r}")
    return path


def _version_groups(rows: list[ModelVersion]) -> list[dict[str, Any]]:
    """Registered versions per model, newest first, with the version a rollback would restore."""
    names = sorted({r.model_name for r in rows})
    groups = []
    for name in names:
        mine = [r for r in rows if r.model_name == name]
        target = rollback_target(mine, name)
        active = next((r.version for r in mine if r.status == "active"), None)
        groups.append({"name": name, "versions": mine, "rollback_to": target, "active": active})
    return groups


async def models_page(*, session: AsyncSession, services: Services) -> dict[str, Any]:
    """Loaded models, the version history per model, the offline comparison."""
    rows = await repo.model_versions(session=session)
    return {
        "models": model_rows(services),
        "errors": services.registry.errors,
        "groups": _version_groups(rows),
        "offline": offline_comparison(services),
        "headline": HEADLINE,
    }
