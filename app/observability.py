"""Prometheus metrics, JSON logs and the request middleware (request id, latency, access log)."""

from __future__ import annotations

import contextvars
import logging
import random
import sys
import time
from typing import Any

import orjson
from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "request_id", default=None
)
access_log = logging.getLogger("recsys.access")
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.0)


_ids = random.Random()  # seeded from os.urandom: unique ids without a syscall per request


def new_id() -> str:
    """A random 128-bit hex id (request and recommendation ids need uniqueness, not secrecy)."""
    return f"{_ids.getrandbits(128):032x}"


class Metrics:
    """Every metric of one app, in its own registry so several apps can live in one process."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}
        r = self.registry
        self.requests = Counter(
            "recsys_http_requests", "HTTP requests", ["method", "route", "status"], registry=r
        )
        self.latency = Histogram(
            "recsys_http_request_seconds",
            "HTTP request latency",
            ["method", "route", "status"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.events_ingested = Counter("recsys_events_ingested", "Events stored", registry=r)
        self.events_duplicate = Counter(
            "recsys_events_duplicate", "Events skipped as already stored", registry=r
        )
        self.events_rejected = Counter(
            "recsys_events_rejected", "Event batches rejected", ["reason"], registry=r
        )
        self.recommend_latency = Histogram(
            "recsys_recommend_seconds",
            "Recommendation latency",
            ["model", "variant"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.cache_lookups = Counter(
            "recsys_cache_lookups", "User-vector cache lookups", ["result"], registry=r
        )
        self.fallbacks = Counter(
            "recsys_fallbacks", "Answers from popularity instead of a model", ["reason"], registry=r
        )
        self.exposures = Counter(
            "recsys_exposures", "Recommendation lists served", ["model", "variant"], registry=r
        )
        self.exposures_dropped = Counter(
            "recsys_exposures_dropped", "Exposures not logged (queue full or DB error)", registry=r
        )
        self.encode_batch = Histogram(
            "recsys_encode_batch_size",
            "User histories encoded per model call",
            buckets=(1, 2, 4, 8, 16, 32, 64),
            registry=r,
        )
        self.cache_errors = Counter(
            "recsys_cache_errors", "Cache operations that failed", ["operation"], registry=r
        )
        self.ranked_lists = Counter(
            "recsys_ranked_lists",
            "Lists ranked over the catalog, by source: index (ANN candidates) or exact",
            ["model", "source"],
            registry=r,
        )
        # A new version's warm-up before it serves (app/serving/warmup.py): users by outcome
        # (warmed, cached: already there, skipped: no state, failed), warm-ups by how they ended
        # (done, deadline, aborted) and seconds per warm-up.
        self.warmup_users = Counter(
            "recsys_warmup_users", "Users warmed before a swap", ["model", "result"], registry=r
        )
        self.warmups = Counter(
            "recsys_warmups", "Warm-ups by how they ended", ["model", "state"], registry=r
        )
        self.warmup_seconds = Histogram(
            "recsys_warmup_seconds",
            "Warm-up time of a new model version before its swap",
            ["model"],
            buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120),
            registry=r,
        )

    def child(self, metric: Any, *values: str) -> Any:
        """metric.labels(*values), looked up once: labels() takes a lock and builds a key on
        every call, which the per-request metrics of the serving path paid several times."""
        key = (id(metric), values)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*values)
        return found

    def cache_error(self, operation: str) -> None:
        """Count one failed cache operation."""
        self.cache_errors.labels(operation=operation).inc()


class JsonFormatter(logging.Formatter):
    """One JSON object per line, with the request id when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        request_id = request_id_var.get()
        if request_id:
            payload["request_id"] = request_id
        payload.update(getattr(record, "fields", {}))
        if record.exc_info:
            payload["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(payload, default=str).decode()


def configure_logging(level: str, *, json_logs: bool) -> None:
    """Route all logs to stderr, as JSON lines unless disabled."""
    handler = logging.StreamHandler(sys.stderr)
    if json_logs:
        handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


def _route_template(scope: Scope) -> str:
    """The matched route's path template (bounded label cardinality), or 'unmatched'."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    return str(path) if path else "unmatched"


class RequestMiddleware:
    """Pure ASGI middleware: accepts/echoes X-Request-ID, caps body size, records metrics."""

    def __init__(self, app: ASGIApp, *, metrics: Metrics, max_body_bytes: int) -> None:
        self.app, self.metrics, self.max_body_bytes = app, metrics, max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _header(scope, b"x-request-id") or new_id()
        token = request_id_var.set(request_id[:128])
        started = time.perf_counter()
        state = {"status": 500, "rejected": False}
        try:
            if _content_length(scope) > self.max_body_bytes:
                await _send_json(send, 413, {"detail": "request body too large"}, request_id)
                state["status"] = 413
                return
            await self.app(
                scope,
                self._capped(receive, send, request_id, state),
                self._stamped(send, request_id, state),
            )
        finally:
            self._record(scope, int(state["status"]), time.perf_counter() - started)
            request_id_var.reset(token)

    def _capped(
        self, receive: Receive, send: Send, request_id: str, state: dict[str, Any]
    ) -> Receive:
        """A receive that answers 413 itself once a streamed body passes the cap."""
        seen = 0

        async def wrapped() -> Message:
            nonlocal seen
            if state["rejected"]:
                return {"type": "http.disconnect"}
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_body_bytes:
                state.update(status=413, rejected=True)
                await _send_json(send, 413, {"detail": "request body too large"}, request_id)
                # The app sees a disconnect and whatever it answers is dropped.
                return {"type": "http.disconnect"}
            return message

        return wrapped

    @staticmethod
    def _stamped(send: Send, request_id: str, state: dict[str, Any]) -> Send:
        """A send that adds X-Request-ID and remembers the status."""

        async def wrapped(message: Message) -> None:
            if state["rejected"]:
                return
            if message["type"] == "http.response.start":
                state["status"] = message["status"]
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        return wrapped

    def _record(self, scope: Scope, status: int, seconds: float) -> None:
        """Count and time the request, and write the access log line."""
        metrics, labels = self.metrics, (scope["method"], _route_template(scope), str(status))
        metrics.child(metrics.requests, *labels).inc()
        metrics.child(metrics.latency, *labels).observe(seconds)
        if access_log.isEnabledFor(logging.INFO):
            fields = {"path": scope["path"], "ms": round(seconds * 1000, 2)}
            fields |= dict(zip(("method", "route", "status"), labels, strict=True))
            access_log.info("request", extra={"fields": fields})


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return bytes(value).decode("latin-1")
    return None


def _content_length(scope: Scope) -> int:
    value = _header(scope, b"content-length")
    return int(value) if value and value.isdigit() else 0


async def _send_json(send: Send, status: int, body: dict[str, Any], request_id: str) -> None:
    payload = orjson.dumps(body)
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(payload)).encode()),
        (b"x-request-id", request_id.encode()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})
