"""`recsys retrain` on day one and with the database down: no crash, no crash loop, a heartbeat.

The loop tests run the real CLI against a real Postgres that is first unreachable (nothing
listens on the port) and then reachable (a TCP relay to the test server starts on that port).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import exc as sa_exc

from app.config import Settings
from app.db.migrate import upgrade
from app.training import heartbeat
from app.training.loop import RetrainLoop, backoff_s, is_transient
from tests.app.cli.test_cli import RECSYS, clean_env
from tests.app.serving_fixtures import post_history
from tests.conftest import free_port, running_app


def test_backoff_doubles_up_to_the_cap() -> None:
    assert [backoff_s(n, 0.5, 3.0) for n in range(1, 7)] == [0.5, 1.0, 2.0, 3.0, 3.0, 3.0]
    assert backoff_s(10_000, 1.0, 300.0) == 300.0  # no overflow after days of failures


def test_transient_errors() -> None:
    refused = ConnectionRefusedError(111, "Connect call failed")
    wrapped = sa_exc.OperationalError("SELECT 1", {}, refused)
    assert is_transient(refused) and is_transient(wrapped)
    assert is_transient(OSError("Multiple exceptions: [Errno 111] ..."))
    try:
        try:
            raise refused
        except OSError as inner:
            raise RuntimeError("while reading events") from inner
    except RuntimeError as outer:
        assert is_transient(outer)  # the cause decides
    assert not is_transient(ValueError("bad config"))
    assert not is_transient(FileNotFoundError("var/models/mf"))
    assert not is_transient(PermissionError("var/models"))


def test_heartbeat_freshness(tmp_path: Path) -> None:
    beat = tmp_path / "run" / "trainer.heartbeat"
    assert heartbeat.age_s(beat) is None and heartbeat.main([str(beat), "60"]) == 1
    heartbeat.touch(beat)
    assert heartbeat.is_fresh(beat, 60) and heartbeat.main([str(beat), "60"]) == 0
    old = time.time() - 120
    os.utime(beat, (old, old))
    assert not heartbeat.is_fresh(beat, 60) and heartbeat.main([str(beat), "60"]) == 1
    assert heartbeat.main([str(beat)]) == 2  # usage
    check = subprocess.run(  # the container's health check, as compose runs it
        ["python", "-m", "app.training.heartbeat", str(beat), "60"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert check.returncode == 1 and "old" in check.stderr


def test_loop_retries_unreachable_database_and_beats_only_when_working(tmp_path: Path) -> None:
    beat = tmp_path / "heartbeat"
    outcomes: list[str] = []
    script = ["down", "down", "down", "ok", "fail", "ok"]

    def run() -> None:
        outcome = script[len(outcomes)]
        outcomes.append(outcome)
        if outcome == "down":
            raise sa_exc.OperationalError("SELECT", {}, ConnectionRefusedError(111, "refused"))
        if outcome == "fail":
            raise ValueError("a bug, not the database")

    beats: list[int] = []  # per sleep: the heartbeat's time when it began (0: no beat since)
    now = [0.0]

    def sleep(seconds: float) -> None:
        beats.append(beat.stat().st_mtime_ns)
        os.utime(beat, ns=(0, 0))  # so the next beat shows as a change
        now[0] += seconds

    loop = RetrainLoop(
        run,
        40.0,
        retry_s=1.0,
        retry_max_s=2.5,
        heartbeat=beat,
        runs=3,
        sleep=sleep,
        clock=lambda: now[0],
    )
    loop.forever()
    assert outcomes == script and loop.completed == 3
    assert loop.retries == [1.0, 2.0, 2.5]  # doubling, capped
    assert now[0] == 1.0 + 2.0 + 2.5 + 40 + 40  # the two waits: the interval from each start
    # Beats: at the start; none while the database was down; after the run that worked and
    # through the wait after it; none through the wait after the run that failed.
    assert beats[0] > 0 and beats[1:3] == [0, 0]
    assert beats[3] > 0 and beats[4] > 0
    assert beats[6] == 0


class Relay:
    """A TCP relay from a local port to the test Postgres: the database 'comes back' when it
    starts listening. Real sockets, real server; nothing is mocked."""

    def __init__(self, port: int, target: tuple[str, int]) -> None:
        self.port, self.target = port, target
        self.server = socket.create_server(("127.0.0.1", port))
        self.thread = threading.Thread(target=self.accept, daemon=True)
        self.thread.start()

    def accept(self) -> None:
        """Relay each connection in both directions until either side closes."""
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self.pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def pipe(source: socket.socket, sink: socket.socket) -> None:
        """Copy bytes from `source` to `sink`."""
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                with contextlib.suppress(OSError):
                    end.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        """Stop accepting."""
        self.server.close()


@pytest.fixture
def relay_port() -> Iterator[int]:
    """A port nobody listens on yet."""
    yield free_port()


def test_retrain_every_survives_postgres_down_then_runs(
    pg_database: str, relay_port: int, tmp_path: Path
) -> None:
    from tests.conftest import _truncate

    asyncio.run(_truncate(pg_database))  # empty: the run that gets through says so and ends
    url = pg_database.replace("127.0.0.1:5432", f"127.0.0.1:{relay_port}")
    assert url != pg_database
    beat = tmp_path / "trainer.heartbeat"
    env = clean_env(
        RECSYS_DATABASE_URL=url,
        RECSYS_MODEL_DIR=str(tmp_path / "models"),
        RECSYS_RETRAIN_RETRY_S="0.2",
        RECSYS_RETRAIN_RETRY_MAX_S="0.5",
        RECSYS_LOG_JSON="false",
    )
    command = [RECSYS, "retrain", "--models", "mf", "--every", "1s", "--runs", "2"]
    process = subprocess.Popen(
        [*command, "--heartbeat", str(beat)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    relay = None
    try:
        deadline = time.monotonic() + 60
        while not beat.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        started_beat = beat.stat().st_mtime_ns
        time.sleep(2.5)  # several refused attempts, 0.2 s doubling to 0.5 s apart
        assert process.poll() is None, process.communicate()  # still looping, not crashed
        assert beat.stat().st_mtime_ns == started_beat  # no beat while the database is down
        relay = Relay(relay_port, ("127.0.0.1", 5432))
        out, err = process.communicate(timeout=90)
    finally:
        if process.poll() is None:
            process.kill()
        if relay is not None:
            relay.close()
    assert process.returncode == 0, out + err
    attempts = err.count("database unreachable (attempt")
    assert attempts >= 3, err
    assert "retrying in 0.5s" in err  # the cap
    assert "database reachable again" in err
    assert err.count("too little data to retrain yet") == 2, err
    assert beat.stat().st_mtime_ns > started_beat


def test_retrain_once_with_too_little_data_exits_0(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'shop.db'}"
    upgrade(url)
    env = clean_env(RECSYS_DATABASE_URL=url, RECSYS_MODEL_DIR=str(tmp_path / "models"))

    def retrain() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [RECSYS, "retrain", "--models", "mf"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    empty = retrain()
    assert empty.returncode == 0, empty.stderr
    assert "too little data to retrain yet: 0 events, 0 users" in empty.stdout

    async def post_few() -> None:
        settings = Settings(database_url=url, model_dir=tmp_path / "models", encode_catalog=False)
        async with running_app(settings) as client:
            await post_history(client, "a", ["i1", "i2", "i3"])
            await post_history(client, "b", ["i1", "i2", "i3", "i4"])
            await post_history(client, "c", ["i1"])  # fewer than 3 distinct items: not usable

    asyncio.run(post_few())
    few = retrain()
    assert few.returncode == 0, few.stderr
    assert "8 events, 2 users with 3+ distinct items" in few.stdout
    assert not (tmp_path / "models").exists() or not any((tmp_path / "models").iterdir())


def test_retrain_once_with_the_database_down_exits_1(tmp_path: Path) -> None:
    env = clean_env(
        RECSYS_DATABASE_URL=f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/x",
        RECSYS_MODEL_DIR=str(tmp_path / "models"),
    )
    done = subprocess.run(
        [RECSYS, "retrain", "--models", "mf"], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 1 and "database unreachable" in done.stderr
    assert "Traceback" not in done.stderr
