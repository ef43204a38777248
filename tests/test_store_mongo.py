"""What is specific to MongoStore: the documents and the TTL index on the server, expiry filtered
on every read, compare-and-set under concurrency, one command per store call, motor, and a
server that goes away or hangs.

Round trips are counted with pymongo's command monitoring: the test's client carries a
``CommandListener`` that records every command sent to the test's own database (each test has
one, so other tests on the same server never show up in the count).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import httpx
import pytest
from anyio.from_thread import start_blocking_portal
from bson.codec_options import CodecOptions
from litestar.testing import TestClient
from motor.motor_asyncio import AsyncIOMotorClient
from pymongo import AsyncMongoClient, monitoring
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import InvalidOperation, OperationFailure
from pymongo.uri_parser import parse_uri

from litestar_flash_sessions import SessionConfig
from litestar_flash_sessions.commit import store_key
from litestar_flash_sessions.record import TOUCH_SECONDS, Ended, Moved, decode
from litestar_flash_sessions.stores import StoreUnavailableError
from litestar_flash_sessions.stores.mongo import MongoStore
from tests.app import build_app
from tests.conftest import RecordingHandler, app_client, session_id
from tests.faults import FaultProxy, app_started_while_down, assert_serves_again, fault_proxy, free_port
from tests.harness import FakeClock
from tests.harness_mongo import Document, mongo_client, scratch_database, unique_database_name

TTL = 600
T = TypeVar("T")


class CommandLog(monitoring.CommandListener):
    """The names of the commands the client sent to one database, in order."""

    def __init__(self) -> None:
        self.database = ""
        self.names: list[str] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.database_name == self.database:
            self.names.append(event.command_name)

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass

    def since_last(self) -> list[str]:
        """The commands since the previous call."""
        names, self.names = self.names, []
        return names


@pytest.fixture
def commands() -> CommandLog:
    return CommandLog()


@pytest.fixture
async def database(commands: CommandLog, mongo_url: str) -> AsyncIterator[AsyncDatabase[Document]]:
    async with mongo_client(mongo_url, event_listeners=[commands]) as client, scratch_database(client) as scratch:
        commands.database = scratch.name
        yield scratch


@pytest.fixture
async def store(database: AsyncDatabase[Document], clock: FakeClock) -> MongoStore:
    opened = MongoStore(database, clock=clock)
    await opened.startup()
    return opened


def documents(database: AsyncDatabase[Document]) -> AsyncCollection[Document]:
    """The sessions collection as stored, with datetimes read back as aware UTC."""
    return database.get_collection("sessions", codec_options=CodecOptions(tz_aware=True))


def utc(timestamp: float) -> datetime:
    return datetime.fromtimestamp(timestamp, tz=UTC)


# --- the collection on the server -----------------------------------------------------------


async def test_startup_creates_the_ttl_index_once(store: MongoStore, database: AsyncDatabase[Document]) -> None:
    await store.startup()  # the plugin calls it at every app start: must be harmless
    indexes = await database["sessions"].index_information()
    ttl_indexes = [spec for spec in indexes.values() if spec["key"] == [("expires_at", 1)]]
    assert len(ttl_indexes) == 1, indexes
    assert ttl_indexes[0]["expireAfterSeconds"] == 0


async def test_a_conflicting_index_fails_startup_loudly(database: AsyncDatabase[Document]) -> None:
    await database["sessions"].create_index("expires_at", expireAfterSeconds=3600)
    with pytest.raises(OperationFailure):
        await MongoStore(database).startup()
    with pytest.raises(OperationFailure):  # a misconfiguration, not an outage: the app does not start
        async with MongoStore(database).lifespan():
            pass


async def test_custom_collection_name(database: AsyncDatabase[Document], clock: FakeClock) -> None:
    store = MongoStore(database, "web_sessions", clock=clock)
    await store.startup()
    assert await store.set("s" * 43, b"record", TTL, None)
    assert await database["web_sessions"].count_documents({}) == 1
    assert "sessions" not in await database.list_collection_names()


async def test_document_shape_with_expiry(
    store: MongoStore, database: AsyncDatabase[Document], clock: FakeClock
) -> None:
    async with app_client(store, expire_after_seconds=TTL) as client:
        await client.post("/set", json={"user": "ann"})
        sid = await session_id(client)
    document = await documents(database).find_one({})
    assert document is not None
    assert set(document) == {"_id", "data", "expires_at"}
    assert document["_id"] == store_key(sid), "the key hashes the id: a dump of the database opens no session"
    assert document["data"] == await store.get(store_key(sid), None)
    assert abs(document["expires_at"] - utc(clock.now + TTL)) < timedelta(milliseconds=2)


async def test_document_without_expiry_has_null_expires_at(
    store: MongoStore, database: AsyncDatabase[Document]
) -> None:
    async with app_client(store, expire_after_seconds=None) as client:
        await client.post("/set", json={"user": "ann"})
        assert (await client.get("/read/user")).json()["value"] == "ann"
        sid = await session_id(client)
    document = await documents(database).find_one({"_id": store_key(sid)})
    assert document is not None
    assert document["expires_at"] is None, "a read without sliding expiry must not add one"


async def test_a_read_slides_expires_at_without_rewriting_the_data(
    store: MongoStore, database: AsyncDatabase[Document], clock: FakeClock
) -> None:
    async with app_client(store, expire_after_seconds=TTL) as client:
        await client.post("/set", json={"user": "ann"})
        sid = await session_id(client)
        before = await documents(database).find_one({"_id": store_key(sid)})
        clock.advance(TOUCH_SECONDS - 1)  # later, the read would also refresh the record's seen_at
        assert (await client.get("/read/user")).json()["value"] == "ann"
    after = await documents(database).find_one({"_id": store_key(sid)})
    assert before is not None
    assert after is not None
    assert after["data"] == before["data"]
    assert abs(after["expires_at"] - utc(clock.now + TTL)) < timedelta(milliseconds=2)


# --- expiry is filtered, never left to the reaper --------------------------------------------


async def test_an_expired_document_is_not_returned_before_the_reaper_runs(
    store: MongoStore, database: AsyncDatabase[Document], clock: FakeClock
) -> None:
    sid = "e" * 43
    assert await store.set(sid, b"record", 60, None)
    clock.advance(61)  # expired for the store; in real time it expires in a minute, so still there
    assert await store.get(sid, None) is None
    assert await store.get(sid, TTL) is None, "a sliding read must not revive an expired session"
    document = await documents(database).find_one({"_id": sid})
    assert document is not None, "the document is still on the server: only the filter hid it"
    assert document["expires_at"] <= utc(clock.now), "and its expiry was not slid"
    assert not await store.set(sid, b"changed", TTL, b"record"), "nor can it be updated"


async def test_an_expired_session_through_the_app_is_a_fresh_one(store: MongoStore, clock: FakeClock) -> None:
    async with app_client(store, expire_after_seconds=60) as client:
        await client.post("/set", json={"user": "ann"})
        clock.advance(61)
        assert (await client.get("/read/user")).json() == {"value": None, "id": None}


async def test_a_new_record_replaces_an_expired_unreaped_one_only(
    store: MongoStore, database: AsyncDatabase[Document], clock: FakeClock
) -> None:
    sid = "r" * 43
    assert await store.set(sid, b"old", 60, None)
    assert not await store.set(sid, b"intruder", TTL, None), "the id holds an unexpired record"
    clock.advance(61)
    assert await store.set(sid, b"new", TTL, None), "an expired record no longer blocks the id"
    document = await documents(database).find_one({"_id": sid})
    assert document is not None
    assert document["data"] == b"new"
    assert abs(document["expires_at"] - utc(clock.now + TTL)) < timedelta(milliseconds=2)


async def test_a_record_without_expiry_never_expires(store: MongoStore, clock: FakeClock) -> None:
    sid = "n" * 43
    assert await store.set(sid, b"forever", None, None)
    clock.advance(10 * 365 * 86400)
    assert await store.get(sid, None) == b"forever"
    assert not await store.set(sid, b"other", None, None)


# --- compare-and-set --------------------------------------------------------------------------


async def test_concurrent_writers_of_one_version_exactly_one_wins(
    store: MongoStore, database: AsyncDatabase[Document]
) -> None:
    for round_ in range(5):
        sid = f"{round_}" * 43
        assert await store.set(sid, b"base", TTL, None)
        results = await asyncio.gather(*(store.set(sid, b"w%d" % n, TTL, b"base") for n in range(10)))
        assert sum(results) == 1, results
        [winner] = [n for n, won in enumerate(results) if won]
        assert await store.get(sid, None) == b"w%d" % winner


async def test_concurrent_creators_of_one_id_exactly_one_wins(store: MongoStore) -> None:
    for round_ in range(5):
        sid = f"{round_}" * 43
        results = await asyncio.gather(*(store.set(sid, b"c%d" % n, TTL, None) for n in range(10)))
        assert sum(results) == 1, results


async def test_sliding_reads_never_miss_under_concurrent_writes(store: MongoStore) -> None:
    """``findAndModify`` of an existing document, amid updates of it, always finds it.

    (The wire server used in development returns ``None`` for about 1% of ``findAndModify``
    calls that *upsert* a missing document; the store never upserts, and this shows its reads
    are not affected.)
    """
    sids = [f"{n:02d}" * 21 + "x" for n in range(5)]
    for sid in sids:
        assert await store.set(sid, b"v", TTL, None)

    async def write(sid: str) -> None:
        current = await store.get(sid, None)
        assert current is not None
        await store.set(sid, current[:20] + b"v", TTL, current)

    for _ in range(5):
        reads = [store.get(sid, TTL) for sid in sids for _ in range(8)]
        writes = [write(sid) for sid in sids for _ in range(3)]
        results = await asyncio.gather(*reads, *writes)
        assert None not in results[: len(reads)]


# --- round trips ------------------------------------------------------------------------------


@pytest.mark.parametrize(("ttl", "read"), [(TTL, "findAndModify"), (None, "find")])
async def test_one_command_per_store_call(store: MongoStore, commands: CommandLog, ttl: int | None, read: str) -> None:
    async with app_client(store, expire_after_seconds=ttl) as client:
        commands.since_last()  # the start-up's createIndexes
        await client.post("/set", json={"user": "ann"})
        assert commands.since_last() == ["insert"], "a new session: one write, nothing to read"

        await client.get("/read/user")
        assert commands.since_last() == [read], "a handler that only reads: one read"

        await client.post("/set", json={"user": "bob"})
        assert commands.since_last() == [read, "update"], "a handler that changes: one read, one write"

        await client.get("/plain")
        assert commands.since_last() == [], "a handler without the session: nothing"

        await client.post("/rotate")
        assert commands.since_last() == [read, "insert", "update"], "rotation: read, write new id, move old"

        await client.post("/logout")
        assert commands.since_last() == [read, "update"], "a logout: one read, one compare-and-set to a tombstone"

        await client.get("/read/user")
        assert commands.since_last() == [], "no cookie any more: nothing to read"


async def test_startup_is_one_command(store: MongoStore, commands: CommandLog) -> None:
    commands.since_last()
    await store.startup()
    assert commands.since_last() == ["createIndexes"]


# --- motor --------------------------------------------------------------------------------


async def test_the_app_works_on_a_motor_database(clock: FakeClock, mongo_url: str) -> None:
    motor: AsyncIOMotorClient[Document] = AsyncIOMotorClient(mongo_url, serverSelectionTimeoutMS=5000)
    database = motor[unique_database_name()]
    try:
        store = MongoStore(database, clock=clock)
        async with app_client(store, expire_after_seconds=TTL) as client:
            indexes = await database["sessions"].index_information()
            assert indexes["expires_at_1"]["expireAfterSeconds"] == 0

            await client.post("/set", json={"user": "ann"})
            first_id = await session_id(client)
            assert (await client.get("/read/user")).json()["value"] == "ann"

            await client.post("/flash", json={"message": "hello"})
            assert (await client.get("/read/message")).json()["value"] == "hello"
            assert (await client.get("/read/message")).json()["value"] is None

            await client.post("/rotate")
            second_id = await session_id(client)
            assert second_id != first_id
            assert (await client.get("/read/user")).json()["value"] == "ann"
            moved = await database["sessions"].find_one({"_id": store_key(first_id)})
            assert moved is not None
            assert decode(moved["data"]) == Moved(store_key(second_id)), "the old id holds a tombstone, not the session"
            stale = await client.get("/read/user", headers={"cookie": f"session={first_id}"})
            assert stale.json() == {"value": None, "id": None}, "the old id opens nothing"

            response = await client.post("/logout")
            assert "Max-Age=0" in response.headers["set-cookie"]
            left = {document["_id"]: decode(document["data"]) async for document in database["sessions"].find({})}
            assert left == {store_key(first_id): Moved(store_key(second_id)), store_key(second_id): Ended()}, (
                "no session left: only the tombstones"
            )
            assert (await client.get("/read/user")).json() == {"value": None, "id": None}
    finally:
        await motor.drop_database(database.name)
        motor.close()


# --- faults -------------------------------------------------------------------------------


@asynccontextmanager
async def store_behind(
    proxy: FaultProxy, mongo_url: str, database_name: str, store_timeout: float | None = 0.5
) -> AsyncIterator[MongoStore]:
    """A store whose client reaches the server only through ``proxy``, with short time-outs."""
    parsed = parse_uri(mongo_url)
    host, port = parsed["nodelist"][0]
    url = mongo_url.replace(f"{host}:{port}", f"127.0.0.1:{proxy.port}", 1)
    assert url != mongo_url, "MONGO_URL must name its port for the proxy to replace it"
    short = {"serverSelectionTimeoutMS": 300, "connectTimeoutMS": 300, "socketTimeoutMS": 300}
    async with mongo_client(url, directConnection=True, **short) as client:
        yield MongoStore(client[database_name], timeout=store_timeout)


def proxied_server(mongo_url: str) -> tuple[str, int]:
    host, port = parse_uri(mongo_url)["nodelist"][0]
    return host, port


async def eventually_ok(client: httpx.AsyncClient, path: str) -> httpx.Response:
    """The first non-503 answer: after an outage the driver needs a moment to find the server."""
    deadline = time.monotonic() + 10
    while True:
        response = await client.get(path)
        if response.status_code != 503 or time.monotonic() > deadline:
            return response
        await asyncio.sleep(0.1)


@pytest.mark.parametrize("fault", ["down", "hang"])
async def test_unreachable_server_gives_503_then_recovers(
    database: AsyncDatabase[Document], session_log: RecordingHandler, fault: str, mongo_url: str
) -> None:
    async with (
        fault_proxy(*proxied_server(mongo_url)) as proxy,
        store_behind(proxy, mongo_url, database.name) as store,
        app_client(store, expire_after_seconds=None) as client,  # reads leave the document as it is
    ):
        await client.post("/set", json={"user": "ann"})
        before = await documents(database).find_one({})

        getattr(proxy, fault)()
        started = time.monotonic()
        for response in (await client.get("/read/user"), await client.post("/set", json={"user": "bob"})):
            assert response.status_code == 503
            assert len(response.content) < 100
        assert time.monotonic() - started < 3, "the store's time-out bounds the wait"
        assert "session store unavailable" in session_log.text
        assert "MongoStore" in session_log.text

        proxy.up()
        response = await eventually_ok(client, "/read/user")
        assert response.status_code == 200
        assert response.json()["value"] == "ann", "nothing of the failed change was written"
        assert await documents(database).find_one({}) == before
        assert (await client.post("/set", json={"user": "cid"})).status_code == 200
        assert (await client.get("/read/user")).json()["value"] == "cid"


async def eventually(call: Callable[[], Awaitable[T]]) -> T:
    """The first result of ``call`` that is not a StoreUnavailableError, retried for up to 10 s.

    Waiting for the driver to be healthy again also lets its monitor finish the connection
    attempt the fault stalled, instead of leaving a half-open socket behind at ``close()``.
    """
    deadline = time.monotonic() + 10
    while True:
        try:
            return await call()
        except StoreUnavailableError:
            if time.monotonic() > deadline:
                raise
        await asyncio.sleep(0.1)


@pytest.mark.parametrize("fault", ["down", "hang"])
async def test_driver_errors_become_store_unavailable(
    database: AsyncDatabase[Document], fault: str, mongo_url: str
) -> None:
    """Without the store's own time-out, pymongo's errors (its time-outs included) still mean 503."""
    async with (
        fault_proxy(*proxied_server(mongo_url)) as proxy,
        store_behind(proxy, mongo_url, database.name, store_timeout=None) as store,
    ):
        assert await store.get("x" * 43, None) is None  # connected once, then the fault
        getattr(proxy, fault)()
        driver_error = "MongoStore: (AutoReconnect|ServerSelectionTimeoutError|NetworkTimeout): "
        for call in (store.startup(), store.get("x" * 43, TTL), store.set("x" * 43, b"r", TTL, None)):
            with pytest.raises(StoreUnavailableError, match=driver_error):
                await call
        with pytest.raises(StoreUnavailableError, match=driver_error):
            await store.delete("x" * 43)
        proxy.up()
        assert await eventually(lambda: store.get("x" * 43, None)) is None, "the same store works again"


async def test_server_down_at_start_up_then_up_without_a_restart(session_log: RecordingHandler, mongo_url: str) -> None:
    """The app starts while nothing listens at the store's URL (one warning: the TTL index could
    not be created), answers 503, and once a server appears on that port the first operation
    creates the index, once: no later request asks for it again.

    The server appears as a proxy, started on the store's port, to the test server of
    ``MONGO_URL`` (so this also runs against a real ``mongod`` given by URL).
    """
    commands = CommandLog()
    commands.database = unique_database_name()
    port = free_port()
    store = MongoStore.from_url(
        f"mongodb://127.0.0.1:{port}/?directConnection=true", commands.database, timeout=0.5, event_listeners=[commands]
    )
    try:
        # The app starts, and answers 503 while down, before the proxy listens on its port.
        async with (
            app_started_while_down(store, session_log, "MongoStore", warned=True) as client,
            fault_proxy(*proxied_server(mongo_url), listen_port=port),
        ):
            await assert_serves_again(client)
            async with mongo_client(mongo_url) as admin:
                indexes = await admin[commands.database]["sessions"].index_information()
            assert indexes["expires_at_1"]["expireAfterSeconds"] == 0, "the index start-up could not create"
            assert commands.since_last().count("createIndexes") == 1
            for _ in range(3):
                assert (await client.get("/read/user")).status_code == 200
                assert (await client.post("/set", json={"user": "more"})).status_code == 200
            assert "createIndexes" not in commands.since_last(), "never asked again once created"
            await store.shutdown()  # while the proxy still runs
    finally:
        async with mongo_client(mongo_url) as admin:
            await admin.drop_database(commands.database)


async def test_the_index_is_created_lazily_once_by_a_store_never_started(
    database: AsyncDatabase[Document], commands: CommandLog
) -> None:
    store = MongoStore(database)
    results = await asyncio.gather(*(store.get(f"{n:02d}" * 21 + "x", None) for n in range(5)))
    assert results == [None] * 5
    assert commands.since_last().count("createIndexes") == 1, "first operations racing: one createIndexes"
    assert await store.set("s" * 43, b"record", TTL, None)
    assert commands.since_last() == ["insert"]
    indexes = await database["sessions"].index_information()
    assert indexes["expires_at_1"]["expireAfterSeconds"] == 0


# --- configuration ----------------------------------------------------------------------------


@pytest.fixture
async def unconnected() -> AsyncIterator[AsyncDatabase[Document]]:
    """A database whose client never connects: configuration is checked without a server."""
    client: AsyncMongoClient[Document] = AsyncMongoClient("mongodb://127.0.0.1:9", connect=False)
    yield client["app"]
    await client.close()


@pytest.mark.parametrize(
    "name",
    ["", "1sessions", "web-sessions", "a.b", "system.sessions", "$cmd", "sessions; drop", "séances", "x" * 64],
)
async def test_invalid_collection_names_raise_value_error(unconnected: AsyncDatabase[Document], name: str) -> None:
    with pytest.raises(ValueError, match="collection name"):
        MongoStore(unconnected, name)


async def test_valid_collection_names_are_accepted(unconnected: AsyncDatabase[Document]) -> None:
    for name in ("sessions", "_s", "Web_Sessions_2", "x" * 63):
        MongoStore(unconnected, name)


async def test_a_client_or_collection_instead_of_a_database_raises_type_error(
    unconnected: AsyncDatabase[Document],
) -> None:
    with pytest.raises(TypeError, match="needs a database"):
        MongoStore(unconnected.client)
    with pytest.raises(TypeError, match="needs a database"):
        MongoStore(unconnected["sessions"])


# --- who closes the client -------------------------------------------------------------------


def own_client(store: MongoStore) -> AsyncMongoClient[Document]:
    """The client a store made by ``from_url`` holds while it is open (the test looks inside)."""
    assert store._owned is not None
    return store._owned.client


async def test_a_store_from_a_url_closes_its_client_when_the_app_stops(clock: FakeClock, mongo_url: str) -> None:
    name = unique_database_name()
    store = MongoStore.from_url(mongo_url, name, timeout=2.5, clock=clock, appname="lfs-test")
    try:
        async with store.lifespan():
            client = own_client(store)
            assert client.options.pool_options.metadata["application"] == {"name": "lfs-test"}, "options applied"
            assert client.options.server_selection_timeout == 2.5, "a server that is down is given up on in time"
            assert await store.set("o" * 43, b"record", TTL, None)
        with pytest.raises(InvalidOperation, match="after close"):
            await client[name].list_collection_names()
        async with store.lifespan():  # an app that starts again: a new client of the store's own
            assert own_client(store) is not client
            assert await store.get("o" * 43, None) == b"record"
        assert store._owned is None
    finally:
        async with mongo_client(mongo_url) as admin:
            await admin.drop_database(name)


async def test_a_database_passed_in_stays_usable_after_the_app_stops(
    database: AsyncDatabase[Document], clock: FakeClock
) -> None:
    store = MongoStore(database, clock=clock)
    async with store.lifespan():
        assert await store.set("g" * 43, b"record", TTL, None)
    assert await database["sessions"].count_documents({}) == 1, "the client still works"


@pytest.mark.parametrize("driver", ["pymongo", "motor"])
def test_a_client_made_before_the_app_serves_one_test_client_then_the_next_fails_saying_what_to_do(
    driver: str,
    mongo_url: str,
) -> None:
    url, name = mongo_url, unique_database_name()
    client: Any = (AsyncMongoClient if driver == "pymongo" else AsyncIOMotorClient)(url, serverSelectionTimeoutMS=5000)
    app = build_app(SessionConfig(store=MongoStore(client[name])))  # as at import time: on no event loop yet
    # The first TestClient runs the app on this portal's loop, which the test keeps open to close
    # the client on it afterwards (a client bound to a closed loop can no longer be closed).
    with start_blocking_portal() as portal:
        try:
            first = TestClient(app)
            first.blocking_portal = portal
            with first:
                assert first.post("/set", json={"user": "ann"}).status_code == 200
                assert first.get("/read/user").json()["value"] == "ann"
            with pytest.raises(BaseExceptionGroup) as failed, TestClient(app):  # a loop of its own
                pass
            assert failed.group_contains(RuntimeError, match=r"another event loop than the app's.*MongoStore\.from_url")
        finally:
            portal.call(client.drop_database, name)
            if driver == "pymongo":
                portal.call(client.close)
            else:
                client.close()


@pytest.mark.parametrize("change", [{"$set": {"data": "text"}}, {"$set": {"data": 3}}, {"$unset": {"data": ""}}])
async def test_a_document_whose_data_is_not_binary_is_a_corrupt_record(
    store: MongoStore, database: AsyncDatabase[Document], session_log: RecordingHandler, change: dict[str, Any]
) -> None:
    # A collection enforces no schema: a document edited by hand can hold anything, or nothing.
    async with app_client(store) as client:
        await client.post("/set", json={"user": "ann"})
        await database["sessions"].update_many({}, change)
        response = await client.get("/read/user")
        assert response.status_code == 200
        assert response.json() == {"value": None, "id": None}
        assert "WARNING corrupt session record in MongoStore" in session_log.text
