"""The contract suite's PostgreSQL stores: one owning a pool made from a DSN (``PostgresStore.from_url``),
one sharing a single connection it is given. Each test gets a table of its own, dropped afterwards.

asyncpg is imported only when a PostgreSQL test runs, so the rest of the suite works without it.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, ExitStack, asynccontextmanager

from litestar_flash_sessions import SessionBackend
from tests import servers
from tests.harness import FakeClock, Harness, register


def unique_table() -> str:
    return f"sessions_{uuid.uuid4().hex[:12]}"


async def drop_table(url: str, table: str) -> None:
    import asyncpg

    connection = await asyncpg.connect(url)
    try:
        await connection.execute(f'DROP TABLE IF EXISTS "{table}"')
    finally:
        await connection.close()


@asynccontextmanager
async def throwaway_postgres(port: int) -> AsyncIterator[Callable[[], AbstractAsyncContextManager[str]]]:
    """A PostgreSQL of the test's own: its data directory is made at once (``initdb``, about a
    second), and what this yields starts the server on ``port`` when entered (yielding the DSN of
    its ``postgres`` database) and stops it after. So a test can point a store at ``port``
    while nothing listens there, then start a real server on it. (The suite's own start code:
    tests/servers.py.)
    """
    with ExitStack() as stack:
        with servers.outcome("a throwaway PostgreSQL"):
            cluster = await asyncio.to_thread(servers.PostgresCluster.create, servers.state_folder(stack, "pg"))

        @asynccontextmanager
        async def running() -> AsyncIterator[str]:
            with servers.outcome("a throwaway PostgreSQL"):
                url = await asyncio.to_thread(cluster.start, port)
            try:
                yield url
            finally:
                await asyncio.to_thread(cluster.stop)

        yield running


@asynccontextmanager
async def open_postgres_dsn(clock: FakeClock, url: str) -> AsyncIterator[SessionBackend]:
    from litestar_flash_sessions.stores.postgres import PostgresStore

    table = unique_table()
    store = PostgresStore.from_url(url, table, clock=clock)
    await store.startup()
    try:
        yield store
    finally:
        await store.shutdown()
        await drop_table(url, table)


@asynccontextmanager
async def open_postgres_connection(clock: FakeClock, url: str) -> AsyncIterator[SessionBackend]:
    import asyncpg

    from litestar_flash_sessions.stores.postgres import PostgresStore

    table = unique_table()
    connection = await asyncpg.connect(url)
    try:
        store = PostgresStore(connection, table, clock=clock)
        await store.startup()
        yield store
    finally:
        await connection.execute(f'DROP TABLE IF EXISTS "{table}"')
        await connection.close()


register(Harness("postgres", open_postgres_dsn, server_fixture="postgres_url"))
register(Harness("postgres_connection", open_postgres_connection, server_fixture="postgres_url"))
