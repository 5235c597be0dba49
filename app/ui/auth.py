"""Who may open the dashboard: the admin key as the X-API-Key header, or a login cookie.

The cookie holds `<expiry>.<nonce>.<mac>`, the mac an HMAC of the rest under a secret derived
from the admin key, so changing the key ends every session and nothing is stored server-side.
Write actions also need a form token (an HMAC of the cookie's nonce, so per session): with the
cookie SameSite=Strict, a page on another site can neither send the cookie nor know the token.
Without an admin key the dashboard is open, as the admin API is (app/api/deps.check_key); the
cookie and token still guard write forms, keyed by a per-process secret.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from app.api.deps import is_admin
from app.config import Settings

COOKIE = "recsys_ui"
SESSION_S = 12 * 3600  # a login lasts a working day
_PROCESS_SECRET = secrets.token_bytes(32)  # the open dashboard's (no admin key) signing key


class LoginRequired(Exception):
    """The request lacks the admin key; `wrong` when one was given and did not match."""

    def __init__(self, wrong: bool = False) -> None:
        super().__init__("the dashboard needs the admin key (RECSYS_ADMIN_KEY)")
        self.wrong = wrong


class BadToken(Exception):
    """A write form came without this session's token (a forged or stale form)."""


@dataclass(frozen=True)
class Viewer:
    """Who is looking: how they got in, and their session's form token."""

    by_header: bool  # the admin key came as X-API-Key (no cookie, no token needed)
    nonce: str | None  # the session cookie's nonce; None: no cookie yet
    token: str  # the form token of this session ("" without a session)
    open: bool  # no admin key is configured


def _secret(settings: Settings) -> bytes:
    """The signing key: derived from the admin key, else the process's own."""
    if not settings.admin_key:
        return _PROCESS_SECRET
    return hashlib.sha256(b"recsys-ui:" + settings.admin_key.encode()).digest()


def _mac(secret: bytes, purpose: str, text: str) -> str:
    return hmac.new(secret, f"{purpose}:{text}".encode(), hashlib.sha256).hexdigest()


def new_cookie(settings: Settings, now: float | None = None) -> str:
    """A fresh session cookie value."""
    body = f"{int((now or time.time()) + SESSION_S)}.{secrets.token_hex(16)}"
    return f"{body}.{_mac(_secret(settings), 'session', body)}"


def cookie_nonce(settings: Settings, value: str | None) -> str | None:
    """The nonce of a valid, unexpired cookie, else None (compared in constant time)."""
    parts = (value or "").split(".")
    if len(parts) != 3 or not parts[0].isdigit():
        return None
    body = f"{parts[0]}.{parts[1]}"
    if not hmac.compare_digest(parts[2], _mac(_secret(settings), "session", body)):
        return None
    return parts[1] if int(parts[0]) > time.time() else None


def form_token(settings: Settings, nonce: str) -> str:
    """The write forms' token for the session with this nonce."""
    return _mac(_secret(settings), "form", nonce)


def key_matches(settings: Settings, given: str) -> bool:
    """Whether `given` is the admin key (constant time)."""
    key = settings.admin_key or ""
    return bool(key) and hmac.compare_digest(given.encode(), key.encode())


def viewer_of(request: Request) -> Viewer:
    """The request's viewer; LoginRequired when the admin key is set and not presented."""
    settings: Settings = request.app.state.settings
    nonce = cookie_nonce(settings, request.cookies.get(COOKIE))
    token = form_token(settings, nonce) if nonce else ""
    if not settings.admin_key:
        return Viewer(by_header=False, nonce=nonce, token=token, open=True)
    if is_admin(request, settings):
        return Viewer(by_header=True, nonce=nonce, token=token, open=False)
    if nonce is None:
        raise LoginRequired(wrong=bool(request.headers.get("x-api-key")))
    return Viewer(by_header=False, nonce=nonce, token=token, open=False)


async def require_viewer(request: Request) -> Viewer:
    """`viewer_of` as a dependency."""
    return viewer_of(request)


def check_form_token(viewer: Viewer, given: str) -> None:
    """A write needs the header key or the session's token in the form (BadToken)."""
    if viewer.by_header:
        return
    if not viewer.token or not hmac.compare_digest(given.encode(), viewer.token.encode()):
        raise BadToken("this form is stale or was not sent by the dashboard: reload the page")


ViewerDep = Annotated[Viewer, Depends(require_viewer)]
