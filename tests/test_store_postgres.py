"""What is specific to the PostgreSQL store: its schema on the server, expiry without a reaper,
statements per request, a shared single connection, and a server that goes away or hangs."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import httpx
import pytest

from litestar_flash_sessions import SessionConfig
from litestar_flash_sessions.stores.postgres import PostgresStore
from tests.app import build_app
from tests.conftest import RecordingHandler, app_client, in_loop_client
from tests.faults import FaultProxy, app_started_while_down, assert_serves_again, fault_proxy, free_port
from tests.harness import FakeClock, wait_until
from tests.harness_postgres import drop_table, throwaway_postgres, unique_table

SID = "S" * 43
OTHER = "O" * 43


@pytest.fixture
def url(postgres_url: str) -> str:
    return postgres_url


@pytest.fixture
async def admin(url: str) -> AsyncIterator[asyncpg.Connection]:
    """A connection of the test's own, to look at the server as an operator would."""
    connection = await asyncpg.connect(url)
    yield connection
    await connection.close()


@pytest.fixture
async def table(url: str) -> AsyncIterator[str]:
    name = unique_table()
    yield name
    await drop_table(url, name)


@pytest.fixture
async def store(url: str, table: str, clock: FakeClock) -> AsyncIterator[PostgresStore]:
    opened = PostgresStore(url, table, clock=clock)
    await opened.startup()
    yield opened
    await opened.shutdown()


async def rows(admin: asyncpg.Connection, table: str) -> dict[str, tuple[bytes, datetime | None]]:
    records = await admin.fetch(f'SELECT id, data, expires_at FROM "{table}"')
    return {record["id"]: (record["data"], record["expires_at"]) for record in records}


def at(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def through(url: str, proxy: FaultProxy) -> str:
    """The DSN ``url`` with its host and port replaced by the proxy's."""
    parts = urlsplit(url)
    user = f"{parts.username}@" if parts.username else ""
    return parts._replace(netloc=f"{user}127.0.0.1:{proxy.port}").geturl()


@asynccontextmanager
async def proxy_to(url: str) -> AsyncIterator[FaultProxy]:
    parts = urlsplit(url)
    async with fault_proxy(parts.hostname or "127.0.0.1", parts.port or 5432) as proxy:
        yield proxy


# --- schema ---------------------------------------------------------------------------------


async def test_startup_creates_table_and_index(store: PostgresStore, admin: asyncpg.Connection, table: str) -> None:
    columns = await admin.fetch(
        "SELECT column_name, data_type, is_nullable FROM information_schema.columns "
        "WHERE table_name = $1 ORDER BY ordinal_position",
        table,
    )
    assert [tuple(column) for column in columns] == [
        ("id", "text", "NO"),
        ("data", "bytea", "NO"),
        ("expires_at", "timestamp with time zone", "YES"),
    ]
    indexes = {
        record["indexdef"]
        for record in await admin.fetch("SELECT indexdef FROM pg_indexes WHERE tablename = $1", table)
    }
    assert f"CREATE UNIQUE INDEX {table}_pkey ON public.{table} USING btree (id)" in indexes
    assert f"CREATE INDEX {table}_expires_at_idx ON public.{table} USING btree (expires_at)" in indexes


async def test_init_sessions_table_is_idempotent_and_keeps_rows(
    store: PostgresStore, admin: asyncpg.Connection, table: str
) -> None:
    assert await store.set(SID, b"one", None, None)
    await store.init_sessions_table()
    await store.startup()
    assert set(await rows(admin, table)) == {SID}


async def test_stores_starting_together_create_the_table_once(url: str, table: str) -> None:
    stores = [PostgresStore(url, table) for _ in range(6)]
    await asyncio.gather(*(store.startup() for store in stores))
    assert await stores[0].set(SID, b"x", None, None)
    assert await stores[5].get(SID, None) == b"x"
    await asyncio.gather(*(store.shutdown() for store in stores))


async def test_a_reserved_word_is_a_valid_table_name(url: str, admin: asyncpg.Connection) -> None:
    store = PostgresStore(url, "user")
    try:
        await store.startup()
        assert await store.set(SID, b"r", None, None)
        assert await store.get(SID, None) == b"r"
    finally:
        await store.shutdown()
        await admin.execute('DROP TABLE IF EXISTS "user"')


@pytest.mark.parametrize("name", ["", "1abc", "sessions; DROP TABLE x", "a-b", 'x"y', "a" * 64, "public.sessions"])
def test_invalid_table_name_is_rejected(name: str) -> None:
    with pytest.raises(ValueError, match="plain identifier"):
        PostgresStore("postgresql://127.0.0.1/db", name)


def test_pool_must_be_a_pool_a_connection_or_a_dsn() -> None:
    with pytest.raises(TypeError, match="asyncpg Pool or Connection"):
        PostgresStore(42)


async def test_pool_options_need_a_dsn(url: str) -> None:
    async with asyncpg.create_pool(url, min_size=1, max_size=1) as pool:
        with pytest.raises(ValueError, match="pool_options"):
            PostgresStore(pool, pool_options={"max_size": 3})


# --- expiry --------------------------------------------------------------------------------


async def test_expiry_column_holds_clock_time(
    store: PostgresStore, admin: asyncpg.Connection, table: str, clock: FakeClock
) -> None:
    clock.now = 1_000_000_000.25  # far from the server's clock: only the store's clock counts
    assert await store.set(SID, b"a", 60, None)
    assert await store.set(OTHER, b"b", None, None)
    assert await rows(admin, table) == {SID: (b"a", at(clock.now + 60)), OTHER: (b"b", None)}
    clock.advance(30)
    assert await store.get(SID, 60) == b"a"
    assert (await rows(admin, table))[SID][1] == at(clock.now + 60), "a read with expires_in slides the expiry"
    assert await store.get(SID, None) == b"a"
    assert (await rows(admin, table))[SID][1] == at(clock.now + 60), "a plain read leaves it"


async def test_expired_row_is_never_returned_before_it_is_reaped(
    store: PostgresStore, admin: asyncpg.Connection, table: str, clock: FakeClock
) -> None:
    assert await store.set(SID, b"old", 10, None)
    clock.advance(10)
    assert SID in await rows(admin, table), "still in the table"
    assert await store.get(SID, None) is None
    assert await store.get(SID, 10) is None, "sliding does not revive it"
    assert (await rows(admin, table))[SID] == (b"old", at(clock.now)), "and does not touch it"


async def test_delete_expired_removes_only_expired_rows(
    store: PostgresStore, admin: asyncpg.Connection, table: str, clock: FakeClock
) -> None:
    assert await store.set("never", b"n", None, None)
    assert await store.set("later", b"l", 100, None)
    assert await store.set("gone", b"g", 10, None)
    await admin.execute(  # more than one batch, written directly to keep the test fast
        f"INSERT INTO \"{table}\" SELECT 'gone' || n, '\\x00', $1 FROM generate_series(1, 2500) AS n",
        at(clock.now + 5),
    )
    clock.advance(10)
    assert await store.delete_expired() == 2501
    assert set(await rows(admin, table)) == {"never", "later"}
    assert await store.delete_expired() == 0
    clock.advance(90)
    assert await store.delete_expired() == 1
    assert set(await rows(admin, table)) == {"never"}


async def test_sessions_expire_through_the_app(
    store: PostgresStore, admin: asyncpg.Connection, table: str, clock: FakeClock
) -> None:
    async with app_client(store, expire_after_seconds=100) as client:
        await client.post("/set", json={"user": "ann"})
        clock.advance(100)
        assert (await client.get("/read/user")).json() == {"value": None, "id": None}
        assert len(await rows(admin, table)) == 1, "the expired row waits for delete_expired"
        assert await store.delete_expired() == 1
        assert await rows(admin, table) == {}


async def test_the_plugin_deletes_expired_rows_periodically(
    store: PostgresStore, admin: asyncpg.Connection, table: str, clock: FakeClock
) -> None:
    async with app_client(store, expire_after_seconds=100, cleanup_interval_seconds=0.05) as client:
        await client.post("/set", json={"user": "ann"})
        assert await store.set(SID, b"kept", None, None)
        clock.advance(100)

        async def only_the_kept_row_left() -> bool:
            return set(await rows(admin, table)) == {SID}

        await wait_until(only_the_kept_row_left)
        assert set(await rows(admin, table)) == {SID}


# --- statements per request ------------------------------------------------------------------


class QueryLog:
    """Every query asyncpg sends on the connections it is added to (asyncpg's query loggers)."""

    def __init__(self) -> None:
        self.queries: list[str] = []

    def __call__(self, record: Any) -> None:
        self.queries.append(record.query)

    async def add_to(self, connection: asyncpg.Connection) -> None:
        connection.add_query_logger(self)

    async def take(self) -> list[str]:
        await asyncio.sleep(0)  # asyncpg calls loggers with loop.call_soon
        taken, self.queries = self.queries, []
        return ["RESET" if "RESET ALL" in query else query.split()[0] for query in taken]


async def count_requests(store: PostgresStore, log: QueryLog, ttl: int | None, reset: list[str]) -> None:
    """Drive each kind of request and check the statements it sent (``reset``: what the pool adds
    when a connection goes back)."""
    read = [("SELECT" if ttl is None else "UPDATE"), *reset]
    async with app_client(store, expire_after_seconds=ttl) as client:
        await client.post("/set", json={"user": "warm up: asyncpg prepares each statement once"})
        await client.post("/set", json={"user": None})
        client.cookies.clear()  # an emptied session keeps its record a while: start a new one
        await log.take()
        await client.post("/set", json={"user": "ann"})
        assert await log.take() == ["INSERT", *reset], "a new session: one write"
        assert (await client.get("/read/user")).json()["value"] == "ann"
        assert await log.take() == read, "reading: one statement"
        await client.post("/set", json={"user": "bob"})
        assert await log.take() == [*read, "UPDATE", *reset], "changing: one read and one write"
        assert (await client.get("/plain")).text == "plain"
        assert await log.take() == [], "no session, no statement"
        await client.post("/rotate")
        assert await log.take() == [*read, "INSERT", *reset, "UPDATE", *reset], "rotating: new id, old one moved"
        await client.post("/logout")
        assert await log.take() == [*read, "UPDATE", *reset], "a logout: one read, one compare-and-set to a tombstone"


@pytest.mark.parametrize("ttl", [None, 3600])
async def test_statements_per_request_with_its_own_pool(url: str, table: str, ttl: int | None) -> None:
    log = QueryLog()
    store = PostgresStore(url, table, pool_options={"init": log.add_to})
    await count_requests(store, log, ttl, reset=[])


@pytest.mark.parametrize("ttl", [None, 3600])
async def test_statements_per_request_on_one_connection(url: str, table: str, ttl: int | None) -> None:
    log = QueryLog()
    connection = await asyncpg.connect(url)
    await log.add_to(connection)
    try:
        await count_requests(PostgresStore(connection, table), log, ttl, reset=[])
    finally:
        await connection.close()


async def test_a_given_pool_adds_its_reset_query(url: str, table: str) -> None:
    """asyncpg resets a connection when it goes back to a pool: one more query per operation."""
    log = QueryLog()
    async with asyncpg.create_pool(url, min_size=1, max_size=1, init=log.add_to) as pool:
        await count_requests(PostgresStore(pool, table), log, 3600, reset=["RESET"])
        assert not pool.is_closing(), "the store leaves a pool it was given open"


# --- a single shared connection -----------------------------------------------------------------


async def test_one_connection_serves_concurrent_requests(url: str, table: str) -> None:
    connection = await asyncpg.connect(url)
    try:
        store = PostgresStore(connection, table)
        app = build_app(SessionConfig(store=store, expire_after_seconds=3600))

        async def visitor(number: int) -> None:
            async with in_loop_client(app) as client:
                assert (await client.post("/set", json={"n": number})).status_code == 200
                assert (await client.get("/read/n")).json()["value"] == number

        async with app.lifespan():
            await asyncio.gather(*(visitor(number) for number in range(10)))
        async with app.lifespan(), in_loop_client(app) as client:
            await client.post("/set", json={"start": 0})
            responses = await asyncio.gather(
                # Six writers at once: a commit that loses its compare-and-set replays its change and tries again.
                *(client.post("/set", json={f"k{n}": n}) for n in range(6)),
                *(client.get("/read/start") for _ in range(10)),
            )
            assert {response.status_code for response in responses} == {200}
            for n in range(6):
                assert (await client.get(f"/read/k{n}")).json()["value"] == n, "concurrent changes are merged"
        assert not connection.is_closed(), "the store leaves a connection it was given open"
    finally:
        await connection.close()


# --- ownership -------------------------------------------------------------------------------


async def test_a_store_from_a_url_closes_its_pool_when_the_app_stops(url: str, table: str) -> None:
    opened: list[asyncpg.Connection] = []

    async def remember(connection: asyncpg.Connection) -> None:
        opened.append(connection)

    store = PostgresStore.from_url(url, table, init=remember, min_size=2)
    async with store.lifespan():
        assert await store.set(SID, b"x", None, None)
        assert len(opened) == 2, "the pool options were applied"
    assert all(connection.is_closed() for connection in opened), "the store closed the pool it made"
    async with store.lifespan():  # an app that starts again: a new pool of the store's own
        assert await store.get(SID, None) == b"x"
    assert len(opened) == 4
    assert all(connection.is_closed() for connection in opened)


async def test_a_pool_or_connection_passed_in_stays_open_after_the_app_stops(url: str, table: str) -> None:
    async with asyncpg.create_pool(url, min_size=1, max_size=1) as pool:
        store = PostgresStore(pool, table)
        async with store.lifespan():
            assert await store.set(SID, b"x", None, None)
        assert not pool.is_closing()
        assert await pool.fetchval(f'SELECT count(*) FROM "{table}"') == 1, "and it still works"
    connection = await asyncpg.connect(url)
    try:
        store = PostgresStore(connection, table)
        async with store.lifespan():
            assert await store.get(SID, None) == b"x"
        assert not connection.is_closed()
        assert await connection.fetchval(f'SELECT count(*) FROM "{table}"') == 1, "and it still works"
    finally:
        await connection.close()


def test_from_url_needs_a_dsn() -> None:
    with pytest.raises(TypeError, match="DSN string"):
        PostgresStore.from_url(42)  # type: ignore[arg-type]


async def test_a_dsn_pool_is_created_lazily_and_recreated_after_shutdown(url: str, table: str) -> None:
    store = PostgresStore(url, table)
    assert await store.get(SID, None) is None, "used before startup: pool and table created on demand"
    assert await store.set(SID, b"x", None, None)
    await store.shutdown()
    await store.shutdown()
    assert await store.get(SID, None) == b"x"
    await store.shutdown()


# --- faults ----------------------------------------------------------------------------------


async def assert_unavailable(client: httpx.AsyncClient, session_log: RecordingHandler, **body: Any) -> None:
    started = time.monotonic()
    response = await client.post("/set", json=body)
    assert time.monotonic() - started < 3, "the store's timeout bounds the wait"
    assert response.status_code == 503
    assert len(response.content) < 100, "a short body"
    assert "PostgresStore" in session_log.text


@pytest.mark.parametrize("ttl", [None, 3600])
async def test_server_down_gives_503_writes_nothing_then_recovers(
    url: str, table: str, admin: asyncpg.Connection, session_log: RecordingHandler, ttl: int | None
) -> None:
    async with proxy_to(url) as proxy:
        store = PostgresStore(through(url, proxy), table, timeout=0.5)
        async with app_client(store, expire_after_seconds=ttl) as client:
            await client.post("/set", json={"user": "ann"})
            before = await rows(admin, table)
            proxy.down()
            await assert_unavailable(client, session_log, user="bob")
            assert (await client.get("/plain")).status_code == 200, "routes without a session still work"
            assert await rows(admin, table) == before, "nothing written"
            proxy.up()
            assert (await client.get("/read/user")).json()["value"] == "ann"
            assert (await client.post("/set", json={"user": "bob"})).status_code == 200
            assert (await client.get("/read/user")).json()["value"] == "bob"


async def test_server_hanging_gives_503_then_recovers(
    url: str, table: str, admin: asyncpg.Connection, session_log: RecordingHandler
) -> None:
    async with proxy_to(url) as proxy:
        store = PostgresStore(through(url, proxy), table, timeout=0.5)
        async with app_client(store, expire_after_seconds=3600) as client:
            await client.post("/set", json={"user": "ann"})
            proxy.hang()
            await assert_unavailable(client, session_log, user="bob")
            proxy.up()
            # The stalled statement may still reach the server; either way the record is whole.
            assert (await client.get("/read/user")).json()["value"] in {"ann", "bob"}
            assert (await client.post("/set", json={"user": "carl"})).status_code == 200
            assert (await client.get("/read/user")).json()["value"] == "carl"


async def test_hang_then_drop_writes_nothing(
    url: str, table: str, admin: asyncpg.Connection, session_log: RecordingHandler
) -> None:
    async with proxy_to(url) as proxy:
        store = PostgresStore(through(url, proxy), table, timeout=0.5)
        async with app_client(store) as client:
            await client.post("/set", json={"user": "ann"})
            before = await rows(admin, table)
            proxy.hang()
            await assert_unavailable(client, session_log, user="bob")
            proxy.down()  # the stalled bytes never arrive
            proxy.up()
            assert await rows(admin, table) == before, "nothing written"
            assert (await client.get("/read/user")).json()["value"] == "ann"


async def test_a_single_connection_recovers_from_a_hang(url: str, table: str, session_log: RecordingHandler) -> None:
    async with proxy_to(url) as proxy:
        connection = await asyncpg.connect(through(url, proxy))
        try:
            store = PostgresStore(connection, table, timeout=0.5)
            async with app_client(store, expire_after_seconds=3600) as client:
                await client.post("/set", json={"user": "ann"})
                proxy.hang()
                await assert_unavailable(client, session_log, user="bob")
                proxy.up()
                assert (await client.post("/set", json={"user": "carl"})).status_code == 200
                assert (await client.get("/read/user")).json()["value"] == "carl"
        finally:
            connection.terminate()


async def test_server_down_at_start_up_then_up_without_a_restart(session_log: RecordingHandler) -> None:
    """A store given a DSN of a server that is not running yet: the app starts anyway (one
    warning), answers 503 while each request's attempt to create the pool fails, and once a
    real PostgreSQL starts on that port the next request creates the pool and the table."""
    port = free_port()
    async with throwaway_postgres(port) as start_server:
        store = PostgresStore(f"postgresql://postgres@127.0.0.1:{port}/postgres", timeout=0.5)
        async with app_started_while_down(store, session_log, "PostgresStore", warned=True) as client:
            assert store._pool is None, "no pool without a server"
            async with start_server() as dsn:
                await assert_serves_again(client)
                assert store._pool is not None, "the pool the start-up could not create"
                admin = await asyncpg.connect(dsn)
                try:
                    assert await admin.fetchval("SELECT count(*) FROM sessions") >= 1, "and the table"
                finally:
                    await admin.close()
                await store.shutdown()  # while the server still runs (the app's own shutdown then has nothing to close)
