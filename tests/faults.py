"""A TCP proxy a test can cut, to show what a store does when its server goes away or hangs,
and the checks the stores' fault tests share.

The real server keeps running for the other tests; only the connections through the proxy fail.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from litestar_flash_sessions.commit import new_session_id

if TYPE_CHECKING:
    import httpx

    from litestar_flash_sessions.stores import SessionBackend
    from tests.conftest import RecordingHandler


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on (nothing did a moment ago, at least)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class FaultProxy:
    """Forward 127.0.0.1:<port> to ``target``; ``down()`` refuses, ``hang()`` stalls, ``up()`` heals."""

    def __init__(self, target_host: str, target_port: int, port: int = 0) -> None:
        self._target = (target_host, target_port)
        self._mode = "up"
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self.port = port  # 0: any free port, known after start()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        self._drop_connections()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def up(self) -> None:
        self._mode = "up"
        self._flowing.set()

    def down(self) -> None:
        """Close every open connection and refuse new ones (as a stopped server does)."""
        self._mode = "down"
        self._flowing.set()
        self._drop_connections()

    def hang(self) -> None:
        """Keep connections open but forward nothing (as an overloaded server does)."""
        self._mode = "hang"
        self._flowing.clear()

    def _drop_connections(self) -> None:
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._mode == "down":
            writer.transport.abort()
            return
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(*self._target)
        except OSError:
            writer.transport.abort()
            return
        self._writers.update((writer, upstream_writer))
        await asyncio.gather(
            self._pipe(reader, upstream_writer), self._pipe(upstream_reader, writer), return_exceptions=True
        )
        self._writers.difference_update((writer, upstream_writer))

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                await self._flowing.wait()
                if self._mode == "down":
                    break
                writer.write(data)
                await writer.drain()
        finally:
            writer.transport.abort()


@contextlib.asynccontextmanager
async def fault_proxy(host: str, port: int, listen_port: int = 0) -> AsyncIterator[FaultProxy]:
    """A :class:`FaultProxy` to ``host:port``, on ``listen_port`` (by default a free one), closed after."""
    proxy = FaultProxy(host, port, listen_port)
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.close()


async def assert_session_requests_fail_fast(client: httpx.AsyncClient, log: RecordingHandler, store: str) -> None:
    """While the store is out: a read, a write and a logout each answer a short 503, all within the
    store's time-out, and the log names ``store``; handlers without the session still work."""
    started = time.monotonic()
    for request in (
        lambda: client.get("/read/user"),
        lambda: client.post("/set", json={"user": "bob"}),
        lambda: client.post("/logout"),
    ):
        response = await request()
        assert response.status_code == 503
        assert len(response.content) < 100
    # The middleware may log an outage once rather than once per request: ask for one line.
    assert store in log.text
    log.records.clear()
    assert time.monotonic() - started < 5, "each request gives up after the store's timeout"
    assert (await client.get("/plain")).status_code == 200, "handlers without the session still work"


@contextlib.asynccontextmanager
async def app_started_while_down(
    store: SessionBackend, log: RecordingHandler, name: str, *, warned: bool, **config: Any
) -> AsyncIterator[httpx.AsyncClient]:
    """Start the contract app on ``store`` while its server is down, and yield a client of it.

    The app must start all the same, logging one warning that names ``name`` when the store has
    start-up work to do (``warned``; Redis and Webdis have none) and none otherwise; then a
    returning visitor's session requests answer a short 503 (see
    :func:`assert_session_requests_fail_fast`). The client keeps that visitor's cookie: an id
    the store does not know, so the store is asked for it.
    """
    from tests.conftest import app_client  # not at the top: conftest imports the harnesses, which import this

    async with app_client(store, **config) as client:
        warnings = [record for record in log.records if record.levelno == logging.WARNING]
        assert len(warnings) == (1 if warned else 0), log.text
        if warned:
            assert name in warnings[0].getMessage()
            assert "start-up" in warnings[0].getMessage()
        log.records.clear()
        client.cookies.set("session", new_session_id(), domain="testserver.local")
        await assert_session_requests_fail_fast(client, log, name)
        yield client


async def assert_serves_again(client: httpx.AsyncClient, seconds: float = 10) -> None:
    """Once the server is up: the same app, never restarted, stores a session and reads it back.

    503s are allowed for ``seconds`` while the driver finds the server again (pymongo's monitor,
    Webdis's reconnection); anything else must be a success.
    """
    deadline = time.monotonic() + seconds
    while (response := await client.post("/set", json={"user": "back"})).status_code == 503:
        assert time.monotonic() < deadline, "the store never came back"
        await asyncio.sleep(0.1)
    assert response.status_code == 200
    assert (await client.get("/read/user")).json()["value"] == "back"
    assert (await client.post("/set", json={"user": "again"})).status_code == 200
    assert (await client.get("/read/user")).json()["value"] == "again"


async def assert_every_change_answers_503(client: httpx.AsyncClient, fault: str) -> None:
    """A write, a flash, a rotation and a logout each answer a short 503 (never a 500)."""
    for request in (
        lambda: client.post("/set", json={"user": "bob"}),
        lambda: client.post("/flash", json={"message": "hi"}),
        lambda: client.post("/rotate"),
        lambda: client.post("/logout"),
    ):
        response = await request()
        assert response.status_code == 503, (fault, response.text)
        assert len(response.content) < 100
