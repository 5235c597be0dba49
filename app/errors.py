"""Domain errors: flows raise these, and app.main maps each to one HTTP status."""

from __future__ import annotations


class ServiceError(Exception):
    """A request the service cannot answer as asked; `status` is its HTTP status."""

    status = 500

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class NotFound(ServiceError):
    """A named thing (model, item, experiment) does not exist or is not loaded."""

    status = 404


class Conflict(ServiceError):
    """The request is well-formed but contradicts the service's state (e.g. an unloaded model);
    `loc` is where in the request, as a validation error's."""

    status = 422

    def __init__(self, detail: str, loc: tuple[str | int, ...] = ("body",)) -> None:
        super().__init__(detail)
        self.loc = loc


class Unavailable(ServiceError):
    """Nothing can answer right now (no model loaded); retrying later may succeed."""

    status = 503
