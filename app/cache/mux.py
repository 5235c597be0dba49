"""One Redis connection shared by every request of a process, for the hot-path scripts.

Redis answers the commands of one connection in the order they were sent, so concurrent
requests can send their commands as they come and take the replies in that order. The commands
sent during one event-loop iteration go out in one socket write (auto-pipelining), so under
load the commands of concurrent requests share system calls instead of each paying a
connection checkout, a write and a read. Per script call, redis-py's pooled client spends about
four times the client CPU of this connection (48.7 us against 12.4 us in the last run of
bench/redis_client.py; without the shared write 16-18 us): a pool checkout, packing in Python,
and a task per `asyncio.wait_for` on every write when a socket timeout is set. Packing and
parsing here are hiredis's, in C.

It serves `EVALSHA` of registered scripts only; every other command stays on redis-py. A
reply that does not come within the timeout fails its caller and closes the connection (a
stopped or hung Redis). For `retry_after_s` after a failure, calls fail at once instead of each
waiting out the timeout; the first call after that connects again.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import time
from typing import Any, cast
from urllib.parse import urlsplit

import hiredis
from redis.asyncio.connection import parse_url
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

Arg = str | bytes | int | float


def supported(url: str) -> bool:
    """Plain TCP and Unix-socket URLs; TLS (rediss://) stays on redis-py."""
    return urlsplit(url).scheme in ("redis", "unix")


class _Protocol(asyncio.Protocol):
    """Writes packed commands and resolves the oldest waiting future with each reply."""

    def __init__(self) -> None:
        self.reader = hiredis.Reader()
        self.waiting: collections.deque[asyncio.Future[Any]] = collections.deque()
        self.transport: asyncio.Transport | None = None
        self.lost: BaseException | None = None
        self.outbox: list[bytes] = []  # packed commands of this loop iteration, not yet written

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        while (reply := self.reader.gets()) is not False:
            future = self.waiting.popleft()
            if future.done():  # its caller timed out or was cancelled: the reply is dropped
                continue
            if isinstance(reply, hiredis.ReplyError):
                error = NoScriptError if str(reply).startswith("NOSCRIPT") else ResponseError
                future.set_exception(error(str(reply)))
            else:
                future.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = exc or RedisConnectionError("connection closed")
        while self.waiting:
            future = self.waiting.popleft()
            if not future.done():
                future.set_exception(RedisConnectionError(f"Redis connection lost: {self.lost}"))

    def send(self, args: tuple[Arg, ...]) -> asyncio.Future[Any]:
        """Write one command; the future gets its reply."""
        if self.lost is not None or self.transport is None or self.transport.is_closing():
            raise RedisConnectionError("Redis connection is closed")
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        if not self.outbox:
            loop.call_soon(self._flush)
        self.outbox.append(hiredis.pack_command(args))  # type: ignore[arg-type]  # stub: 1-tuple
        self.waiting.append(future)
        return future

    def _flush(self) -> None:
        """Write every command sent during the last loop iteration in one socket write: under
        load the concurrent requests' commands share a system call (auto-pipelining)."""
        data, self.outbox = b"".join(self.outbox), []
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)  # a lost connection has already failed the waiters

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class MuxConnection:
    """A lazily (re)connected, shared, pipelined connection with a per-call timeout."""

    def __init__(self, url: str, *, timeout_s: float, retry_after_s: float = 1.0) -> None:
        self.url, self.timeout_s, self.retry_after_s = url, timeout_s, retry_after_s
        self._down_until = 0.0  # monotonic time before which calls fail without trying
        self.options = parse_url(url)
        self._protocol: _Protocol | None = None
        self._connecting = asyncio.Lock()
        self._scripts: dict[bytes, bytes] = {}  # sha1 hex -> source

    def register(self, source: str | bytes) -> bytes:
        """A script's sha1, for `evalsha`; its source is kept to load it on NOSCRIPT."""
        text = source.encode() if isinstance(source, str) else source
        sha = hashlib.sha1(text).hexdigest().encode()
        self._scripts[sha] = text
        return sha

    async def evalsha(self, sha: bytes, keys: list[str], args: list[Arg]) -> Any:
        """Run a registered script; loads it when Redis lost it (a restart, SCRIPT FLUSH)."""
        command: tuple[Arg, ...] = (b"EVALSHA", sha, len(keys), *keys, *args)
        try:
            return await self.call(command)
        except NoScriptError:
            return await self.call((b"EVAL", self._scripts[sha], len(keys), *keys, *args))

    async def call(self, command: tuple[Arg, ...]) -> Any:
        """One command's reply; a timeout or a lost connection raises redis-py's errors."""
        if self._down_until and time.monotonic() < self._down_until:
            raise RedisConnectionError("Redis failed moments ago; not retrying yet")
        try:
            async with asyncio.timeout(self.timeout_s):
                protocol = await self._connected()
                return await protocol.send(command)
        except TimeoutError:
            self._failed()  # a reply that late means a stopped or stuck server: start afresh
            raise RedisTimeoutError(f"no reply from Redis within {self.timeout_s} s") from None
        except OSError as error:
            self._failed()
            raise RedisConnectionError(f"cannot reach Redis: {error}") from None

    def _failed(self) -> None:
        """Drop the connection and fail fast for a while: a down Redis costs one timeout per
        `retry_after_s`, not one per request."""
        self._drop()
        self._down_until = time.monotonic() + self.retry_after_s

    async def _connected(self) -> _Protocol:
        """The open connection, or a new one (one connect at a time)."""
        protocol = self._protocol
        if protocol is not None and protocol.lost is None:
            return protocol
        async with self._connecting:
            if self._protocol is None or self._protocol.lost is not None:
                try:
                    self._protocol = await self._connect()
                except ResponseError:  # refused AUTH or SELECT: the next try would be too
                    self._down_until = time.monotonic() + self.retry_after_s
                    raise
            return self._protocol

    async def _connect(self) -> _Protocol:
        """Open the socket, then AUTH and SELECT as the URL asks."""
        loop = asyncio.get_running_loop()
        options = self.options
        if "path" in options:
            _, protocol = await loop.create_unix_connection(_Protocol, options["path"])
        else:
            host, port = options.get("host", "localhost"), int(options.get("port", 6379))
            _, protocol = await loop.create_connection(_Protocol, host, port)
        try:
            if options.get("password"):
                user = options.get("username")
                await protocol.send((b"AUTH", *([user] if user else []), options["password"]))
            if options.get("db"):
                await protocol.send((b"SELECT", int(options["db"])))
        except BaseException:
            protocol.close()
            raise
        return protocol

    def _drop(self) -> None:
        """Close the connection; pending callers fail, the next call reconnects."""
        if self._protocol is not None:
            self._protocol.close()
            self._protocol = None

    async def close(self) -> None:
        """Close the connection."""
        self._drop()
