"""The dashboard's pages (/ui): server-rendered, light on JavaScript, behind the admin key."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.datastructures import FormData

from app.api.deps import ServicesDep, SessionDep
from app.config import Settings
from app.errors import ServiceError
from app.experiments import flows
from app.schemas import ExperimentIn
from app.serving.lifecycle import refresh
from app.serving.services import Services
from app.training import promotion
from app.ui import data
from app.ui.auth import (
    COOKIE,
    SESSION_S,
    Viewer,
    ViewerDep,
    check_form_token,
    cookie_nonce,
    form_token,
    key_matches,
    new_cookie,
)
from app.ui.forms import ARM_ROWS, FormError, parse_compare, parse_experiment, parse_status

router = APIRouter(prefix="/ui", include_in_schema=False)
templates = Jinja2Templates(directory=Path(__file__).parent / "templates")
DONE = {  # what a redirect after a write says; fixed texts, so a link cannot put words on a page
    "saved": "Experiment saved.",
    "status": "Experiment status changed.",
    "promoted": "Version promoted; the service now serves it.",
    "rolled_back": "Rolled back to the previous version; the service now serves it.",
}


def set_session(response: Response, request: Request, value: str) -> None:
    """The session cookie: HttpOnly, SameSite=Strict, for /ui only, Secure over HTTPS."""
    response.set_cookie(
        COOKIE,
        value,
        max_age=SESSION_S,
        path="/ui",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )


def render(
    request: Request,
    viewer: Viewer,
    template: str,
    context: dict[str, Any],
    status: int = 200,
) -> HTMLResponse:
    """A page; an open dashboard (no admin key) gets a session on the first page so that its
    write forms carry a token too."""
    settings: Settings = request.app.state.settings
    cookie = None
    if viewer.open and viewer.nonce is None:
        cookie = new_cookie(settings)
        nonce = cookie_nonce(settings, cookie) or ""
        viewer = replace(viewer, nonce=nonce, token=form_token(settings, nonce))
    done = DONE.get(request.query_params.get("done", ""))
    page = {"request": request, "viewer": viewer, "done": done, "path": request.url.path}
    response = templates.TemplateResponse(
        request, template, {**page, **context}, status_code=status
    )
    if cookie is not None:
        set_session(response, request, cookie)
    return response


def form_problem(
    request: Request, viewer: Viewer, error: FormError | ServiceError, title: str
) -> HTMLResponse:
    """A readable error page for bad input or a refused action (4xx, never a 500)."""
    if isinstance(error, FormError):
        problems, status = error.problems, error.status
    else:
        loc = getattr(error, "loc", ("",))
        problems, status = [(" ".join(map(str, loc[1:])) or "request", error.detail)], error.status
    context = {"title": title, "problems": problems, "back": request.headers.get("referer")}
    return render(request, viewer, "error.html", context, status=status)


def see_other(path: str, done: str | None = None) -> RedirectResponse:
    """303 to a dashboard page after a write, saying what was done."""
    if done:
        path += f"{'&' if '?' in path else '?'}done={done}"
    return RedirectResponse(path, status_code=303)


@router.get("/login", response_class=HTMLResponse)
async def login_form(request: Request, next: str = "/ui") -> HTMLResponse:
    """The login form (a note instead when no admin key is configured)."""
    settings: Settings = request.app.state.settings
    context = {"next": _safe_next(next), "open": not settings.admin_key, "wrong": False}
    return templates.TemplateResponse(request, "login.html", {"request": request, **context})


def _safe_next(target: str) -> str:
    """Only a dashboard path to go back to: no other site, no other part of the service."""
    return target if target.startswith("/ui") and not target.startswith("//") else "/ui"


@router.post("/login", response_class=HTMLResponse)
async def login(request: Request) -> Response:
    """Check the key; set the session cookie and go on, else show the form again (401)."""
    settings: Settings = request.app.state.settings
    form = await request.form()
    target = _safe_next(str(form.get("next", "/ui")))
    if settings.admin_key and not key_matches(settings, str(form.get("key", ""))):
        context = {"request": request, "next": target, "open": False, "wrong": True}
        return templates.TemplateResponse(request, "login.html", context, status_code=401)
    response = RedirectResponse(target, status_code=303)
    set_session(response, request, new_cookie(settings))
    return response


@router.api_route("/logout", methods=["GET", "POST"])
async def logout() -> RedirectResponse:
    """Forget the session cookie."""
    response = RedirectResponse("/ui/login", status_code=303)
    response.delete_cookie(COOKIE, path="/ui", httponly=True, samesite="strict")
    return response


@router.get("", response_class=HTMLResponse)
async def overview(request: Request, viewer: ViewerDep, services: ServicesDep) -> HTMLResponse:
    """Traffic, latency, cache, fallbacks, loaded models, Postgres/Redis health."""
    found = await data.overview(services, request.app.state.ui_live)
    return render(request, viewer, "overview.html", {"title": "Overview", **found})


@router.get("/compare", response_class=HTMLResponse)
async def compare(
    request: Request, viewer: ViewerDep, services: ServicesDep, session: SessionDep
) -> HTMLResponse:
    """Each model's list for a user or a typed history, side by side."""
    loaded = sorted(services.registry.models)
    query = request.query_params
    chosen = [m for m in query.getlist("models") if m]
    context: dict[str, Any] = {"title": "Compare", "loaded": loaded, "query": query}
    context["chosen"] = chosen or loaded
    try:
        asked = parse_compare(query, chosen)
        if asked is not None and loaded:
            context["result"] = await data.compare(
                session=session,
                services=services,
                user_id=asked.user_id,
                history=asked.history,
                k=asked.k,
                names=asked.models or None,
            )
    except (FormError, ServiceError) as error:
        return form_problem(request, viewer, error, "Compare: bad input")
    return render(request, viewer, "compare.html", context)


@router.get("/items/{item_id}", response_class=HTMLResponse)
async def item(
    request: Request, item_id: str, viewer: ViewerDep, services: ServicesDep, session: SessionDep
) -> HTMLResponse:
    """An item's catalog entry, similar items per model, recent events."""
    if not item_id or len(item_id) > 256 or "\x00" in item_id:
        problem = FormError([("item_id", "an id is 1 to 256 characters without NUL")])
        return form_problem(request, viewer, problem, "Item: bad id")
    found = await data.item_page(session=session, services=services, item_id=item_id)
    status = 200 if found["known"] else 404
    return render(request, viewer, "item.html", {"title": f"Item {item_id}", **found}, status)


@router.get("/items", response_class=HTMLResponse)
async def item_lookup(request: Request, viewer: ViewerDep) -> Response:
    """The item search box's target: on to the item's page."""
    item_id = (request.query_params.get("item_id") or "").strip()
    if not item_id:
        problem = FormError([("item_id", "type an item id")])
        return form_problem(request, viewer, problem, "Item: bad id")
    return RedirectResponse(f"/ui/items/{quote(item_id, safe='')}", status_code=303)


@router.get("/experiments", response_class=HTMLResponse)
async def experiments(
    request: Request, viewer: ViewerDep, services: ServicesDep, session: SessionDep
) -> HTMLResponse:
    """Every experiment, the chosen one's report with interval charts, the edit form."""
    selected = request.query_params.get("name")
    found = await data.experiments_page(session=session, services=services, selected=selected)
    context = {"title": "Experiments", "arm_rows": ARM_ROWS, **found}
    return render(request, viewer, "experiments.html", context)


@router.post("/experiments", response_class=HTMLResponse)
async def save_experiment(
    request: Request, viewer: ViewerDep, services: ServicesDep, session: SessionDep
) -> Response:
    """Create or edit an experiment through the JSON API's flow (same rules)."""
    form = await request.form()
    check_form_token(viewer, str(form.get("token", "")))
    try:
        name, body = parse_experiment(form)
        await _store(services, session, name, body)
    except (FormError, ServiceError) as error:
        return form_problem(request, viewer, error, "Experiment not saved")
    return see_other(f"/ui/experiments?name={quote(name)}", "saved")


async def _store(services: Services, session: AsyncSession, name: str, body: ExperimentIn) -> None:
    """Save an experiment through the JSON API's flow (the same checks and book update)."""
    await flows.save_experiment(
        session=session,
        book=services.experiments,
        loaded=services.registry.models,
        name=name,
        body=body,
    )


@router.post("/experiments/{name}/status", response_class=HTMLResponse)
async def experiment_status(
    request: Request, name: str, viewer: ViewerDep, services: ServicesDep, session: SessionDep
) -> Response:
    """Start, pause or stop an experiment: its stored arms, salt and guardrail, a new status."""
    form = await request.form()
    check_form_token(viewer, str(form.get("token", "")))
    try:
        status = parse_status(str(form.get("status", "")))
        state = await flows.stored_experiment(session=session, name=name)
        body = ExperimentIn.model_validate(
            {
                "arms": state.arms_json(),
                "salt": state.salt,
                "status": status,
                "guardrail": state.guardrail,
            }
        )
        await _store(services, session, name, body)
    except (FormError, ServiceError) as error:
        return form_problem(request, viewer, error, "Status not changed")
    return see_other(f"/ui/experiments?name={quote(name)}", "status")


@router.get("/models", response_class=HTMLResponse)
async def models(
    request: Request, viewer: ViewerDep, services: ServicesDep, session: SessionDep
) -> HTMLResponse:
    """Version history, promote and roll back, the offline comparison."""
    found = await data.models_page(session=session, services=services)
    return render(request, viewer, "models.html", {"title": "Models", **found})


@router.get("/models/confirm", response_class=HTMLResponse)
async def confirm(
    request: Request, viewer: ViewerDep, services: ServicesDep, session: SessionDep
) -> HTMLResponse:
    """Ask before a promotion or a rollback: what serves now, what will serve."""
    action = request.query_params.get("action", "")
    target = (request.query_params.get("target") or "").strip()
    found = await data.models_page(session=session, services=services)
    if action not in ("promote", "rollback") or not target:
        problem = FormError([("action", "promote VERSION or rollback MODEL")])
        return form_problem(request, viewer, problem, "Nothing to confirm")
    context = {"title": "Confirm", "action": action, "target": target, **found}
    return render(request, viewer, "confirm.html", context)


@router.post("/models/promote", response_class=HTMLResponse)
async def promote(
    request: Request, viewer: ViewerDep, services: ServicesDep, session: SessionDep
) -> Response:
    """Promote a registered version (the CLI's rule), then load it in this process at once."""
    form = await request.form()
    version = str(form.get("version", "")).strip()

    def change() -> Awaitable[Any]:
        return promotion.promote(session=session, version=version)

    return await _activate(request, viewer, services, form, change, "Not promoted", "promoted")


@router.post("/models/rollback", response_class=HTMLResponse)
async def rollback(
    request: Request, viewer: ViewerDep, services: ServicesDep, session: SessionDep
) -> Response:
    """Re-activate the previous version of a model, then load it in this process at once."""
    form = await request.form()
    name = str(form.get("model", "")).strip()

    def change() -> Awaitable[Any]:
        return promotion.rollback(session=session, name=name)

    return await _activate(
        request, viewer, services, form, change, "Not rolled back", "rolled_back"
    )


async def _activate(
    request: Request,
    viewer: Viewer,
    services: Services,
    form: FormData,
    change: Callable[[], Awaitable[Any]],
    failed: str,
    done: str,
) -> Response:
    """Run a promotion flow once the form's token checks out, then reload this process's
    models; its refusal is a readable page."""
    check_form_token(viewer, str(form.get("token", "")))
    try:
        await change()
    except ServiceError as error:
        return form_problem(request, viewer, error, failed)
    await refresh(services)
    return see_other("/ui/models", done)


@router.get("/plots/{name}")
async def plot(name: str, services: ServicesDep, viewer: ViewerDep) -> FileResponse:
    """A PNG of the offline comparison's directory (that directory only)."""
    return FileResponse(data.plot_path(services, name), media_type="image/png")
