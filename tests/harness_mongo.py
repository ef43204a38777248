"""The contract suite on MongoStore, through pymongo's AsyncMongoClient on ``MONGO_URL``.

Each test gets a database of its own (``lfs_<uuid>``), dropped afterwards, so that tests running
at the same time against the same server never see each other's sessions.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from pymongo import AsyncMongoClient

from litestar_flash_sessions.stores import CookieStore, SessionStore
from litestar_flash_sessions.stores.mongo import MongoStore
from tests.harness import FakeClock, Harness, register, server_url


def unique_database_name() -> str:
    return f"lfs_{uuid.uuid4().hex}"


@asynccontextmanager
async def mongo_client(url: str | None = None, **options: Any) -> AsyncIterator[AsyncMongoClient[dict[str, Any]]]:
    """A pymongo client on ``url`` (default ``MONGO_URL``), closed afterwards."""
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        url or server_url("MONGO_URL"), **{"serverSelectionTimeoutMS": 5000, **options}
    )
    try:
        yield client
    finally:
        await client.close()


@asynccontextmanager
async def scratch_database(client: AsyncMongoClient[dict[str, Any]]) -> AsyncIterator[Any]:
    """A fresh database on ``client``, dropped afterwards."""
    database = client[unique_database_name()]
    try:
        yield database
    finally:
        await client.drop_database(database.name)


@asynccontextmanager
async def _mongo(clock: FakeClock) -> AsyncIterator[SessionStore | CookieStore]:
    async with mongo_client() as client, scratch_database(client) as database:
        store = MongoStore(database, clock=clock)
        await store.startup()
        try:
            yield store
        finally:
            await store.shutdown()


register(Harness("mongo", _mongo))
