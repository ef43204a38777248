"""The contract suite's PostgreSQL stores: one owning a pool made from a DSN (``PostgresStore.from_url``),
one sharing a single connection it is given. Each test gets a table of its own, dropped afterwards.

asyncpg is imported only when a PostgreSQL test runs, so the rest of the suite works without it.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from litestar_flash_sessions import SessionBackend
from tests.harness import FakeClock, Harness, register, server_url


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
async def open_postgres_dsn(clock: FakeClock) -> AsyncIterator[SessionBackend]:
    from litestar_flash_sessions.stores.postgres import PostgresStore

    url, table = server_url("POSTGRES_URL"), unique_table()
    store = PostgresStore.from_url(url, table, clock=clock)
    await store.startup()
    try:
        yield store
    finally:
        await store.shutdown()
        await drop_table(url, table)


@asynccontextmanager
async def open_postgres_connection(clock: FakeClock) -> AsyncIterator[SessionBackend]:
    import asyncpg

    from litestar_flash_sessions.stores.postgres import PostgresStore

    url, table = server_url("POSTGRES_URL"), unique_table()
    connection = await asyncpg.connect(url)
    try:
        store = PostgresStore(connection, table, clock=clock)
        await store.startup()
        yield store
    finally:
        await connection.execute(f'DROP TABLE IF EXISTS "{table}"')
        await connection.close()


register(Harness("postgres", open_postgres_dsn))
register(Harness("postgres_connection", open_postgres_connection))
