"""A TCP proxy a test can cut, to show what a store does when its server goes away or hangs.

The real server keeps running for the other tests; only the connections through the proxy fail.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import httpx

    from tests.conftest import RecordingHandler


class FaultProxy:
    """Forward 127.0.0.1:<port> to ``target``; ``down()`` refuses, ``hang()`` stalls, ``up()`` heals."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self._target = (target_host, target_port)
        self._mode = "up"
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self.port = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
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
async def fault_proxy(host: str, port: int) -> AsyncIterator[FaultProxy]:
    proxy = FaultProxy(host, port)
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.close()


async def assert_session_requests_fail_fast(client: httpx.AsyncClient, log: RecordingHandler, store: str) -> None:
    """While the store is out: a read, a write and a logout each answer a short 503 whose log line
    names ``store``, all within the store's time-out; handlers without the session still work."""
    started = time.monotonic()
    for request in (
        lambda: client.get("/read/user"),
        lambda: client.post("/set", json={"user": "bob"}),
        lambda: client.post("/logout"),
    ):
        response = await request()
        assert response.status_code == 503
        assert len(response.content) < 100
        assert store in log.text
        log.records.clear()
    assert time.monotonic() - started < 5, "each request gives up after the store's timeout"
    assert (await client.get("/plain")).status_code == 200, "handlers without the session still work"
