"""CORS for shops that call the API from the browser (RECSYS_CORS_ORIGINS)."""

from __future__ import annotations

from typing import Any

# What a shop's page sends: reads and events with JSON bodies and its key. Admin calls
# (PUT /experiments, DELETE /users) are server-side and need no cross-origin access.
CORS_METHODS = ("GET", "POST", "PUT")
CORS_HEADERS = ("Content-Type", "X-API-Key", "X-Request-ID")


def cors_options(origins: tuple[str, ...]) -> dict[str, Any]:
    """Starlette's CORSMiddleware arguments: the listed origins ("*" allows any), no cookies
    (the API authenticates with a header, so credentials are never needed)."""
    return {
        "allow_origins": list(origins),
        "allow_methods": list(CORS_METHODS),
        "allow_headers": list(CORS_HEADERS),
        "expose_headers": ["X-Request-ID"],
        "allow_credentials": False,
        "max_age": 600,
    }
