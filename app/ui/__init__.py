"""The dashboard (/ui): server-rendered pages over the service's own objects."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from app.ui.auth import BadToken, LoginRequired
from app.ui.live import LiveWindow
from app.ui.routes import router, templates

STATIC = Path(__file__).parent / "static"


def _wants_html(request: Request) -> bool:
    """A browser (asks for HTML) gets a login page; other clients get JSON."""
    return "text/html" in request.headers.get("accept", "")


async def _login_required(request: Request, error: Exception) -> Response:
    """Browsers go to the login form (coming back afterwards); others get 401, or 403 for a
    wrong key, as the admin API answers."""
    assert isinstance(error, LoginRequired)
    if _wants_html(request):
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/ui/login?next={quote(target, safe='')}", status_code=303)
    status = 403 if error.wrong else 401
    return JSONResponse({"detail": str(error)}, status_code=status)


async def _bad_token(request: Request, error: Exception) -> HTMLResponse:
    """A write form without this session's token: refused, with a way back."""
    context = {"request": request, "title": "Refused", "problems": [("token", str(error))]}
    return templates.TemplateResponse(request, "error.html", context, status_code=403)


def install(app: FastAPI) -> None:
    """Add the dashboard's routes, static files and live-metrics window to the app."""
    app.state.ui_live = LiveWindow()
    app.include_router(router)
    app.mount("/ui/static", StaticFiles(directory=STATIC), name="ui-static")
    app.add_exception_handler(LoginRequired, _login_required)
    app.add_exception_handler(BadToken, _bad_token)
