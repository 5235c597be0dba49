"""The overview's live numbers, read from the service's own Prometheus metrics objects.

Counters only grow, so a rate needs two readings: each overview keeps the reading it took, and
rates and latency quantiles are over the window since the oldest kept reading that is at least
a minute old (else since the process started, whose reading is all zeros).
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from app.observability import LATENCY_BUCKETS, Metrics

WINDOW_S = 600.0  # readings older than this are dropped
MIN_SPAN_S = 60.0  # a window shorter than this is too noisy; read since the start instead


@dataclass(frozen=True)
class Reading:
    """The counters the overview shows, at one moment."""

    at: float
    events: float = 0.0
    recommends: float = 0.0
    buckets: tuple[float, ...] = (0.0,) * (len(LATENCY_BUCKETS) + 1)  # cumulative, +Inf last
    hits: float = 0.0
    misses: float = 0.0
    fallbacks: dict[str, float] = field(default_factory=dict)


def _samples(metric: Any, name: str) -> list[tuple[dict[str, str], float]]:
    """(labels, value) of every sample called `name` of a metric."""
    return [(s.labels, s.value) for m in metric.collect() for s in m.samples if s.name == name]


def read(metrics: Metrics, now: float) -> Reading:
    """The current values, summed over labels."""
    bounds = [*LATENCY_BUCKETS, float("inf")]
    buckets = [0.0] * len(bounds)
    for labels, value in _samples(metrics.recommend_latency, "recsys_recommend_seconds_bucket"):
        buckets[bounds.index(float(labels["le"]))] += value
    lookups = {"hit": 0.0, "miss": 0.0}
    for labels, value in _samples(metrics.cache_lookups, "recsys_cache_lookups_total"):
        lookups[labels["result"]] = lookups.get(labels["result"], 0.0) + value
    fallbacks: dict[str, float] = {}
    for labels, value in _samples(metrics.fallbacks, "recsys_fallbacks_total"):
        fallbacks[labels["reason"]] = fallbacks.get(labels["reason"], 0.0) + value
    [(_, events)] = _samples(metrics.events_ingested, "recsys_events_ingested_total")
    return Reading(
        at=now,
        events=events,
        recommends=buckets[-1],
        buckets=tuple(buckets),
        hits=lookups["hit"],
        misses=lookups["miss"],
        fallbacks=fallbacks,
    )


def quantile(buckets: list[float], q: float) -> float | None:
    """The q-quantile in seconds from cumulative bucket counts, linear within a bucket (the
    way Prometheus' histogram_quantile reads them); None without observations."""
    total = buckets[-1]
    if total <= 0:
        return None
    rank, lower, below = q * total, 0.0, 0.0
    for bound, count in zip(LATENCY_BUCKETS, buckets, strict=False):
        if count >= rank:
            return lower + (bound - lower) * (rank - below) / max(count - below, 1e-12)
        lower, below = bound, count
    return LATENCY_BUCKETS[-1]  # past the last finite bound: say at least that


@dataclass
class LiveWindow:
    """The readings kept between overview loads (one per app)."""

    started: float = field(default_factory=time.monotonic)
    readings: deque[Reading] = field(default_factory=lambda: deque(maxlen=1000))

    def base(self, now: float) -> Reading:
        """The reading to compare with: the oldest kept one a minute old, else the start."""
        while self.readings and now - self.readings[0].at > WINDOW_S:
            self.readings.popleft()
        for reading in self.readings:
            if now - reading.at >= MIN_SPAN_S:
                return reading
        return Reading(at=self.started)

    def summary(self, metrics: Metrics) -> dict[str, Any]:
        """Rates, latency quantiles, hit rate and fallbacks over the window, for the page."""
        now = time.monotonic()
        current, base = read(metrics, now), self.base(now)
        self.readings.append(current)
        span = max(now - base.at, 1e-9)
        buckets = [c - b for c, b in zip(current.buckets, base.buckets, strict=True)]
        lookups = (current.hits - base.hits) + (current.misses - base.misses)
        p50, p99 = quantile(buckets, 0.5), quantile(buckets, 0.99)
        reasons = set(current.fallbacks)
        fallbacks = {
            r: current.fallbacks.get(r, 0.0) - base.fallbacks.get(r, 0.0) for r in sorted(reasons)
        }
        return {
            "window_s": span,
            "since_start": base.at == self.started,
            "events_per_min": (current.events - base.events) * 60 / span,
            "recommend_per_s": (current.recommends - base.recommends) / span,
            "recommend_count": current.recommends - base.recommends,
            "p50_ms": None if p50 is None else p50 * 1000,
            "p99_ms": None if p99 is None else p99 * 1000,
            "hit_rate": (current.hits - base.hits) / lookups if lookups else None,
            "lookups": lookups,
            "fallbacks": fallbacks,
            "fallback_total": sum(fallbacks.values()),
        }
