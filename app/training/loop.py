"""`recsys retrain --every`: a loop that never crash-loops.

The run itself reports too little data (day one is not a failure). An unreachable database
(Postgres restarting, a refused connection) is retried after a backoff that doubles per
failure up to a cap, each attempt logged. Any other failure is logged with its traceback and
the loop waits for the next interval: the process never exits on its own, so the container's
restart policy never turns one bad run into a restart storm.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import exc as sa_exc

from app.db.session import UNREACHABLE
from app.training import heartbeat

log = logging.getLogger("app.training.loop")

# The database cannot be reached right now (as app.main answers 503 for), or its host name does
# not resolve (yet).
DATABASE_DOWN = (*UNREACHABLE, socket.gaierror)
# Other OSErrors are network trouble too (unreachable host, asyncpg's "Multiple exceptions"),
# except these, which say something about files: retrying them soon will not help.
FILE_ERRORS = (
    FileNotFoundError,
    FileExistsError,
    PermissionError,
    IsADirectoryError,
    NotADirectoryError,
)
BEAT_EVERY_S = 30.0  # heartbeat period while waiting for the next run


def is_transient(error: BaseException) -> bool:
    """Whether `error` (or what caused it) says the database is unreachable, so retrying soon
    may succeed; a connection dropped mid-query counts too."""
    seen: BaseException | None = error
    for _ in range(20):  # a chain of causes, bounded in case it loops
        if seen is None:
            return False
        if isinstance(seen, DATABASE_DOWN):
            return True
        if isinstance(seen, OSError) and not isinstance(seen, FILE_ERRORS):
            return True
        if isinstance(seen, sa_exc.DBAPIError) and seen.connection_invalidated:
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def backoff_s(failures: int, first_s: float, cap_s: float) -> float:
    """The wait before retry number `failures` (1, 2, ...): first_s, doubling, at most cap_s."""
    return float(min(cap_s, first_s * 2.0 ** min(failures - 1, 60)))


@dataclass
class RetrainLoop:
    """Runs `run` every `interval_s` until `runs` runs completed (None: forever)."""

    run: Callable[[], None]
    interval_s: float
    retry_s: float
    retry_max_s: float
    heartbeat: Path | None = None
    runs: int | None = None
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic
    completed: int = 0
    failures: int = 0  # consecutive runs that found the database unreachable
    healthy: bool = True  # the last run completed (the heartbeat beats only then)
    retries: list[float] = field(default_factory=list)  # every backoff waited, for the log/tests

    def forever(self) -> None:
        """Loop until `runs` runs completed; never raises for a failed run."""
        self.beat()
        while self.runs is None or self.completed < self.runs:
            started = self.clock()
            if not self.once():
                continue  # the database was unreachable: retried after the backoff
            if self.runs is not None and self.completed >= self.runs:
                return
            self.wait(self.interval_s - (self.clock() - started))

    def once(self) -> bool:
        """One run; False when the database was unreachable (after waiting out the backoff)."""
        try:
            self.run()
        except Exception as error:
            if is_transient(error):
                self.retry(error)
                return False
            log.exception("retrain run failed; the next run is in %.0fs", self.interval_s)
            self.completed, self.failures, self.healthy = self.completed + 1, 0, False
            return True
        if self.failures:
            log.warning("database reachable again after %d failed attempts", self.failures)
        self.completed, self.failures, self.healthy = self.completed + 1, 0, True
        self.beat()
        return True

    def retry(self, error: BaseException) -> None:
        """Log the unreachable database and wait out the backoff (no heartbeat meanwhile)."""
        self.failures += 1
        delay = backoff_s(self.failures, self.retry_s, self.retry_max_s)
        self.retries.append(delay)
        log.warning(
            "database unreachable (attempt %d): %s: %s; retrying in %.1fs",
            self.failures,
            type(error).__name__,
            str(error).splitlines()[0] if str(error) else "",
            delay,
            extra={"fields": {"attempt": self.failures, "retry_in_s": delay}},
        )
        self.sleep(delay)

    def wait(self, seconds: float) -> None:
        """Sleep until the next run, beating every BEAT_EVERY_S when the last run completed."""
        deadline = self.clock() + max(0.0, seconds)
        while (left := deadline - self.clock()) > 0:
            self.sleep(min(left, BEAT_EVERY_S))
            if self.healthy:
                self.beat()

    def beat(self) -> None:
        """Touch the heartbeat file, when there is one (a failure to write it is only logged)."""
        if self.heartbeat is None:
            return
        try:
            heartbeat.touch(self.heartbeat)
        except OSError as error:
            log.warning("cannot write the heartbeat %s: %s", self.heartbeat, error)
