"""The contract suite's SQLite store: a database file of its own per test, owned by the store."""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from litestar_flash_sessions import SessionBackend
from tests.harness import FakeClock, Harness, register


@asynccontextmanager
async def open_sqlite(clock: FakeClock, _url: str) -> AsyncIterator[SessionBackend]:
    from litestar_flash_sessions.stores.sqlite import SQLiteStore  # aiosqlite only when this store runs

    with tempfile.TemporaryDirectory(prefix="lfs-sqlite-") as folder:
        store = SQLiteStore(Path(folder) / "sessions.db", clock=clock)
        await store.startup()
        try:
            yield store
        finally:
            await store.shutdown()


register(Harness("sqlite", open_sqlite))
