"""The contract suite on MongoStore against the ``mongo_url`` server (tests/servers.py): once through pymongo's
``AsyncMongoClient`` ("mongo", a client the store makes and owns: ``MongoStore.from_url``), once
through a motor database it is given ("mongo_motor"), the two drivers the store accepts.

Each test gets a database of its own (``lfs_<uuid>``), dropped afterwards, so that tests running
at the same time against the same server never see each other's sessions.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from motor.motor_asyncio import AsyncIOMotorClient
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from litestar_flash_sessions import SessionBackend
from litestar_flash_sessions.stores.mongo import MongoStore
from tests.harness import FakeClock, Harness, register

Document = dict[str, Any]


def unique_database_name() -> str:
    return f"lfs_{uuid.uuid4().hex}"


@asynccontextmanager
async def mongo_client(url: str, **options: Any) -> AsyncIterator[AsyncMongoClient[Document]]:
    """A pymongo client on ``url``, closed afterwards."""
    client: AsyncMongoClient[Document] = AsyncMongoClient(url, **{"serverSelectionTimeoutMS": 5000, **options})
    try:
        yield client
    finally:
        await client.close()


@asynccontextmanager
async def scratch_database(client: AsyncMongoClient[Document]) -> AsyncIterator[AsyncDatabase[Document]]:
    """A fresh database on ``client``, dropped afterwards."""
    database = client[unique_database_name()]
    try:
        yield database
    finally:
        await client.drop_database(database.name)


@asynccontextmanager
async def _mongo(clock: FakeClock, url: str) -> AsyncIterator[SessionBackend]:
    database = unique_database_name()
    store = MongoStore.from_url(url, database, clock=clock)
    try:
        await store.startup()
        yield store
    finally:
        await store.shutdown()
        async with mongo_client(url) as client:  # the store's own client is closed by now
            await client.drop_database(database)


@asynccontextmanager
async def _mongo_motor(clock: FakeClock, url: str) -> AsyncIterator[SessionBackend]:
    client: AsyncIOMotorClient[Document] = AsyncIOMotorClient(url, serverSelectionTimeoutMS=5000)
    database = client[unique_database_name()]
    try:
        store = MongoStore(database, clock=clock)
        await store.startup()
        yield store
        await store.shutdown()
    finally:
        await client.drop_database(database.name)
        client.close()


register(Harness("mongo", _mongo, server_fixture="mongo_url"))
register(Harness("mongo_motor", _mongo_motor, server_fixture="mongo_url"))
