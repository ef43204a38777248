"""The contract suite's PostgreSQL stores: one owning a pool made from a DSN (``PostgresStore.from_url``),
one sharing a single connection it is given. Each test gets a table of its own, dropped afterwards.

asyncpg is imported only when a PostgreSQL test runs, so the rest of the suite works without it.
"""

from __future__ import annotations

import asyncio
import glob
import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

import pytest

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


def _postgres_bin() -> Path | None:
    """The newest PostgreSQL's binaries (Debian's layout), or ``None``."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda path: int(Path(path).parts[-3]))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return None if initdb is None else Path(initdb).parent


async def _run(*command: str) -> None:
    """Run a PostgreSQL tool (as the ``postgres`` user under root: initdb refuses root)."""
    if os.geteuid() == 0:
        command = ("runuser", "-u", "postgres", "--", *command)
    process = await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    output, _ = await process.communicate()
    if process.returncode != 0:
        pytest.fail(f"{' '.join(command)} failed: {output.decode(errors='replace')}")


@asynccontextmanager
async def throwaway_postgres(port: int) -> AsyncIterator[Callable[[], AbstractAsyncContextManager[str]]]:
    """A PostgreSQL of the test's own: its data directory is made at once (``initdb``, about a
    second), and what this yields starts the server on ``port`` when entered (yielding the DSN of
    its ``postgres`` database) and stops it after. So a test can point a store at ``port``
    while nothing listens there, then start a real server on it.
    """
    binaries = _postgres_bin()
    if binaries is None:
        pytest.skip("PostgreSQL's initdb is not installed (scripts/servers.sh start installs it)")
    # Under /tmp, not pytest's tmp_path: the postgres user must be able to reach the folder.
    folder = Path(tempfile.mkdtemp(prefix="lfs-pg-", dir="/tmp"))
    try:
        if os.geteuid() == 0:
            shutil.chown(folder, "postgres", "postgres")
        data = folder / "data"
        options = ["-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-locale", "-N"]
        await _run(str(binaries / "initdb"), "-D", str(data), *options)

        @asynccontextmanager
        async def running() -> AsyncIterator[str]:
            server_options = (
                f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off"
            )
            await _run(
                str(binaries / "pg_ctl"),
                "-D",
                str(data),
                "-l",
                str(folder / "pg.log"),
                "-w",
                "start",
                "-o",
                server_options,
            )
            try:
                yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
            finally:
                await _run(str(binaries / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop")

        yield running
    finally:
        shutil.rmtree(folder, ignore_errors=True)


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
