"""What is specific to the SQLite store: its schema on disk, expiry without a reaper, statement counts,
a locked database, connections it owns or is given."""

from __future__ import annotations

import asyncio
import sqlite3
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path

import aiosqlite
import pytest

from litestar_flash_sessions import users
from litestar_flash_sessions.commit import new_session_id, store_key
from litestar_flash_sessions.record import Ended, Moved, decode
from litestar_flash_sessions.stores import StoreUnavailableError
from litestar_flash_sessions.stores.sqlite import SQLiteStore
from tests.conftest import RecordingHandler, app_client
from tests.faults import app_started_while_down, assert_serves_again
from tests.harness import FakeClock, wait_until

SID = "S" * 43
OTHER = "O" * 43


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "sessions.db"


@pytest.fixture
async def store(db_path: Path, clock: FakeClock) -> AsyncIterator[SQLiteStore]:
    opened = SQLiteStore(db_path, clock=clock)
    await opened.startup()
    yield opened
    await opened.shutdown()


@contextmanager
def raw(db_path: Path) -> Iterator[sqlite3.Connection]:
    """A second, plain connection to the same file: what another process would see."""
    connection = sqlite3.connect(db_path, isolation_level=None)
    try:
        yield connection
    finally:
        connection.close()


def rows(db_path: Path, table: str = "sessions") -> dict[str, tuple[bytes, float | None]]:
    with raw(db_path) as connection:
        return {row[0]: (row[1], row[2]) for row in connection.execute(f"SELECT id, data, expires_at FROM {table}")}


# --- schema ---------------------------------------------------------------------------------


async def test_startup_creates_table_index_and_wal(store: SQLiteStore, db_path: Path) -> None:
    with raw(db_path) as connection:
        columns = {row[1]: (row[2], row[3], row[5]) for row in connection.execute("PRAGMA table_info(sessions)")}
        assert columns == {"id": ("TEXT", 0, 1), "data": ("BLOB", 1, 0), "expires_at": ("REAL", 0, 0)}
        [(index_name,)] = connection.execute(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'sessions' AND sql IS NOT NULL"
        ).fetchall()
        assert [row[2] for row in connection.execute(f"PRAGMA index_info({index_name})")] == ["expires_at"]
        assert connection.execute("PRAGMA journal_mode").fetchone() == ("wal",)


async def test_startup_is_idempotent_and_keeps_rows(store: SQLiteStore, db_path: Path) -> None:
    assert await store.set(SID, b"one", None, None)
    await store.startup()
    await store.shutdown()
    await store.startup()
    assert await store.get(SID, None) == b"one"
    assert set(rows(db_path)) == {SID}


async def test_a_reserved_word_is_a_valid_table_name(db_path: Path) -> None:
    store = SQLiteStore(db_path, "order")
    await store.startup()
    assert await store.set(SID, b"r", None, None)
    assert await store.get(SID, None) == b"r"
    await store.shutdown()
    assert rows(db_path, '"order"')[SID][0] == b"r"


@pytest.mark.parametrize("table", ["", "1abc", "sessions; DROP TABLE x", "a-b", 'x"y', "a" * 64, "sessions.x"])
def test_invalid_table_name_is_rejected(db_path: Path, table: str) -> None:
    with pytest.raises(ValueError, match="plain identifier"):
        SQLiteStore(db_path, table)


# --- expiry --------------------------------------------------------------------------------


async def test_expiry_column_holds_clock_time(store: SQLiteStore, db_path: Path, clock: FakeClock) -> None:
    assert await store.set(SID, b"a", 60, None)
    assert await store.set(OTHER, b"b", None, None)
    assert rows(db_path)[SID] == (b"a", clock.now + 60)
    assert rows(db_path)[OTHER] == (b"b", None)
    clock.advance(30)
    assert await store.get(SID, 60) == b"a"
    assert rows(db_path)[SID][1] == pytest.approx(clock.now + 60), "a read with expires_in slides the expiry"
    assert await store.get(SID, None) == b"a"
    assert rows(db_path)[SID][1] == pytest.approx(clock.now + 60), "a plain read leaves it"


async def test_expired_row_is_never_returned_before_it_is_reaped(
    store: SQLiteStore, db_path: Path, clock: FakeClock
) -> None:
    assert await store.set(SID, b"old", 10, None)
    clock.advance(10)
    assert SID in rows(db_path), "still on disk"
    assert await store.get(SID, None) is None
    assert await store.get(SID, 10) is None, "sliding does not revive it"
    assert rows(db_path)[SID] == (b"old", clock.now), "and does not touch it"


async def test_delete_expired_removes_only_expired_rows(store: SQLiteStore, db_path: Path, clock: FakeClock) -> None:
    assert await store.set("never", b"n", None, None)
    assert await store.set("later", b"l", 100, None)
    for number in range(2500):  # more than one batch
        assert await store.set(f"gone{number}", b"g", 10, None)
    clock.advance(10)
    assert await store.delete_expired() == 2500
    assert set(rows(db_path)) == {"never", "later"}
    assert await store.delete_expired() == 0
    clock.advance(90)
    assert await store.delete_expired() == 1
    assert set(rows(db_path)) == {"never"}


def insert_expired(db_path: Path, count: int, expires_at: float) -> None:
    """``count`` expired rows with random ids, written by another connection, then an empty WAL."""
    with raw(db_path) as connection:
        connection.execute("BEGIN")
        connection.executemany(
            "INSERT INTO sessions (id, data, expires_at) VALUES (?, ?, ?)",
            ((new_session_id(), b"r" * 80, expires_at) for _ in range(count)),
        )
        connection.execute("COMMIT")
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")


async def test_delete_expired_checkpoints_the_wal_aside_and_restores_the_threshold(db_path: Path) -> None:
    clock = FakeClock()
    async with aiosqlite.connect(db_path, isolation_level=None) as db:
        await db.execute_fetchall("PRAGMA journal_mode = WAL")
        await db.execute_fetchall("PRAGMA wal_autocheckpoint = 500")
        store = SQLiteStore(db, clock=clock)
        await store.startup()
        insert_expired(db_path, 5000, clock.now - 1)
        loop, deleting = asyncio.get_running_loop(), asyncio.Event()

        def on_statement(sql: str) -> None:  # on aiosqlite's thread
            if sql.startswith("DELETE"):
                loop.call_soon_threadsafe(deleting.set)

        await db.set_trace_callback(on_statement)
        cleanup = asyncio.create_task(store.delete_expired())
        await deleting.wait()
        during = list(await db.execute_fetchall("PRAGMA wal_autocheckpoint"))
        assert during == [(0,)], "no commit of the store's connection checkpoints during the cleanup"
        assert await cleanup == 5000
        assert list(await db.execute_fetchall("PRAGMA wal_autocheckpoint")) == [(500,)], "the user's own setting"
        with raw(db_path) as connection:  # while the store's connection is open, so the log is kept
            _, frames, _ = connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        # Without the checkpoints made aside, the log would hold every page the 200 batches
        # wrote (about 1,900 frames here); with them it is reused from its start again and again.
        assert frames < 500, "the write-ahead log was copied back during the cleanup"
    assert rows(db_path) == {}


async def test_requests_go_on_while_expired_rows_are_deleted(
    store: SQLiteStore, db_path: Path, clock: FakeClock
) -> None:
    insert_expired(db_path, 5000, clock.now - 1)
    async with app_client(store) as client:
        cleanup = asyncio.create_task(store.delete_expired())
        await asyncio.sleep(0)  # the cleanup has started
        for number in range(5):
            response = await client.post("/set", json={"n": number})
            assert response.status_code == 200
            assert (await client.get("/read/n")).json()["value"] == number
        assert not cleanup.done(), "the requests did not wait for the whole cleanup"
        assert await cleanup == 5000
    assert len(rows(db_path)) == 1, "only the live session is left"


async def test_delete_expired_on_a_database_in_memory(clock: FakeClock) -> None:
    store = SQLiteStore(":memory:", clock=clock)
    for number in range(60):
        assert await store.set(f"gone{number}", b"g", 10, None)
    assert await store.set(SID, b"kept", None, None)
    clock.advance(10)
    assert await store.delete_expired() == 60
    assert await store.get(SID, None) == b"kept"
    await store.shutdown()


async def test_sessions_expire_through_the_app(store: SQLiteStore, db_path: Path, clock: FakeClock) -> None:
    async with app_client(store, expire_after_seconds=100) as client:
        await client.post("/set", json={"user": "ann"})
        clock.advance(100)
        assert (await client.get("/read/user")).json() == {"value": None, "id": None}
        assert len(rows(db_path)) == 1, "the expired row waits for delete_expired"
        assert await store.delete_expired() == 1
        assert rows(db_path) == {}


async def test_the_plugin_deletes_expired_rows_periodically(
    store: SQLiteStore, db_path: Path, clock: FakeClock
) -> None:
    async with app_client(store, expire_after_seconds=100, cleanup_interval_seconds=0.05) as client:
        await client.post("/set", json={"user": "ann"})
        assert await store.set(SID, b"kept", None, None)
        clock.advance(100)

        async def only_the_kept_row_left() -> bool:
            return set(rows(db_path)) == {SID}

        await wait_until(only_the_kept_row_left)
        assert set(rows(db_path)) == {SID}


# --- statements per request ------------------------------------------------------------------


class StatementLog:
    """Every SQL statement SQLite runs on a connection (its trace callback)."""

    def __init__(self) -> None:
        self.statements: list[str] = []

    def __call__(self, statement: str) -> None:
        self.statements.append(statement)

    def take(self) -> list[str]:
        taken, self.statements = self.statements, []
        return [statement.split()[0].upper() for statement in taken]


@pytest.mark.parametrize("isolation_level", [None, "DEFERRED"])
@pytest.mark.parametrize("ttl", [None, 3600])
async def test_statements_per_request(db_path: Path, isolation_level: str | None, ttl: int | None) -> None:
    log = StatementLog()
    async with aiosqlite.connect(db_path, isolation_level=isolation_level) as db:
        await db.set_trace_callback(log)
        store = SQLiteStore(db)
        # In Python's default transaction mode each write is wrapped in BEGIN ... COMMIT.

        def write(statement: str) -> list[str]:
            return [statement] if isolation_level is None else ["BEGIN", statement, "COMMIT"]

        read = ["SELECT"] if ttl is None else write("UPDATE")
        async with app_client(store, expire_after_seconds=ttl) as client:
            log.take()
            await client.post("/set", json={"user": "ann"})
            assert log.take() == write("INSERT"), "a new session: one write"
            assert (await client.get("/read/user")).json()["value"] == "ann"
            assert log.take() == read, "reading: one statement"
            await client.post("/set", json={"user": "bob"})
            assert log.take() == [*read, *write("UPDATE")], "changing: one read and one write"
            assert (await client.get("/plain")).text == "plain"
            assert log.take() == [], "no session, no statement"
            first = client.cookies["session"]
            await client.post("/rotate")
            assert log.take() == [*read, *write("INSERT"), *write("UPDATE")], "rotating: new id, old one moved"
            second = client.cookies["session"]
            await client.post("/logout")
            assert log.take() == [*read, *write("UPDATE")], "a logout: one read, one compare-and-set to a tombstone"
        left = {sid: decode(data) for sid, (data, _) in rows(db_path).items()}
        expected = {store_key(first): Moved(store_key(second)), store_key(second): Ended()}
        assert left == expected, "no session left: only the tombstones"


async def test_concurrent_changes_of_one_session_are_all_kept(store: SQLiteStore) -> None:
    async with app_client(store) as client:
        await client.post("/set", json={"start": 0})
        # Six writers at once: a commit that loses its compare-and-set replays its change and tries again.
        responses = await asyncio.gather(*(client.post("/set", json={f"k{n}": n}) for n in range(6)))
        assert {response.status_code for response in responses} == {200}
        for n in range(6):
            assert (await client.get(f"/read/k{n}")).json()["value"] == n


# --- connections -----------------------------------------------------------------------------


async def test_a_store_on_a_path_closes_its_connection_when_the_app_stops(db_path: Path) -> None:
    store = SQLiteStore(db_path)
    async with store.lifespan():
        assert await store.set(SID, b"x", None, None)
        own = store._db  # the test looks inside: the connection is the store's own
    assert own is not None
    with pytest.raises(ValueError, match="Connection closed"):
        await own.execute_fetchall("SELECT 1")
    async with store.lifespan():  # an app that starts again: a new connection of the store's own
        assert await store.get(SID, None) == b"x"


async def test_a_given_connection_stays_open_after_the_app_stops(db_path: Path) -> None:
    async with aiosqlite.connect(db_path, isolation_level=None) as db:
        store = SQLiteStore(db)
        async with store.lifespan():
            assert await store.set(SID, b"x", None, None)
        assert list(await db.execute_fetchall("SELECT count(*) FROM sessions")) == [(1,)], "still open"


async def test_a_given_connection_is_used_and_left_open(db_path: Path) -> None:
    async with aiosqlite.connect(db_path) as db:
        store = SQLiteStore(db)
        async with app_client(store) as client:
            await client.post("/set", json={"user": "ann"})
        assert list(await db.execute_fetchall("SELECT count(*) FROM sessions")) == [(1,)], "still open"
    assert len(rows(db_path)) == 1, "and committed"


async def test_a_path_is_opened_lazily_and_reopened_after_shutdown(db_path: Path, clock: FakeClock) -> None:
    store = SQLiteStore(str(db_path), clock=clock)
    assert await store.get(SID, None) is None, "used before startup: opened and created on demand"
    assert await store.set(SID, b"x", None, None)
    await store.shutdown()
    await store.shutdown()
    assert await store.get(SID, None) == b"x"
    await store.shutdown()


async def test_two_stores_on_one_file_share_sessions(db_path: Path) -> None:
    """Two workers with their own connection to the same file (WAL) see each other's sessions."""
    first, second = SQLiteStore(db_path), SQLiteStore(db_path)
    async with app_client(first) as one, app_client(second) as two:
        await one.post("/set", json={"user": "ann"})
        two.cookies = one.cookies
        assert (await two.get("/read/user")).json()["value"] == "ann"
        await two.post("/set", json={"user": "bob"})
        one.cookies = two.cookies
        assert (await one.get("/read/user")).json()["value"] == "bob"


async def test_two_processes_write_one_file_at_once(db_path: Path) -> None:
    """WAL and SQLite's busy wait let another process write the same file at the same time."""
    child = textwrap.dedent(
        """
        import asyncio, sys
        from litestar_flash_sessions.stores.sqlite import SQLiteStore

        async def main():
            store = SQLiteStore(sys.argv[1])
            await store.startup()
            print("ready", flush=True)
            for n in range(300):
                assert await store.set(f"child{n}", b"c", 60, None)
            await store.shutdown()

        asyncio.run(main())
        """
    )
    store = SQLiteStore(db_path)
    await store.startup()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", child, str(db_path), cwd=Path(__file__).parent.parent, stdout=asyncio.subprocess.PIPE
    )
    assert process.stdout is not None
    assert await process.stdout.readline() == b"ready\n"
    written = 0
    while process.returncode is None:
        assert await store.set(f"parent{written}", b"p", 60, None)
        written += 1
        await asyncio.sleep(0)
    await store.shutdown()
    assert await process.wait() == 0
    ids = set(rows(db_path))
    assert {f"child{n}" for n in range(300)} <= ids
    assert {f"parent{n}" for n in range(written)} <= ids
    assert len(ids) == 300 + written


# --- faults ----------------------------------------------------------------------------------


@contextmanager
def locked(db_path: Path) -> Iterator[None]:
    """Hold the database's write lock from another connection, as a long writer would."""
    with raw(db_path) as connection:
        connection.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            connection.execute("ROLLBACK")


@pytest.mark.parametrize("ttl", [None, 3600])
async def test_locked_database_gives_503_then_recovers(
    db_path: Path, session_log: RecordingHandler, ttl: int | None
) -> None:
    store = SQLiteStore(db_path, timeout=0.5)
    async with app_client(store, expire_after_seconds=ttl) as client:
        await client.post("/set", json={"user": "ann"})
        before = rows(db_path)
        with locked(db_path):
            started = time.monotonic()
            response = await client.post("/set", json={"user": "bob"})
            assert time.monotonic() - started < 2
            assert response.status_code == 503
            assert len(response.content) < 100, "a short body"
            assert "unavailable" in response.text.lower()
            assert "SQLiteStore" in session_log.text
            assert "database is locked" in session_log.text
            if ttl is not None:  # a read that slides the expiry writes too
                assert (await client.get("/read/user")).status_code == 503
        await asyncio.sleep(0.6)  # any statement the timeout gave up on has finished by now
        assert rows(db_path) == before, "nothing written"
        assert (await client.post("/set", json={"user": "bob"})).status_code == 200
        assert (await client.get("/read/user")).json()["value"] == "bob"


async def test_reads_without_sliding_expiry_go_on_while_another_process_writes(db_path: Path) -> None:
    store = SQLiteStore(db_path, timeout=0.5)
    async with app_client(store, expire_after_seconds=None) as client:
        await client.post("/set", json={"user": "ann"})
        with locked(db_path):
            assert (await client.get("/read/user")).json()["value"] == "ann"


async def test_unopenable_database_is_unavailable(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "missing-folder" / "sessions.db", timeout=0.5)
    with pytest.raises(StoreUnavailableError, match="SQLiteStore"):
        await store.startup()
    with pytest.raises(StoreUnavailableError, match="unable to open"):
        await store.get(SID, None)
    # aiosqlite stops the thread of a failed connection without waiting for it: let it finish
    # while this test's event loop still runs.
    await asyncio.sleep(0.1)


async def test_database_unopenable_at_start_up_then_openable_without_a_restart(
    tmp_path: Path, session_log: RecordingHandler
) -> None:
    """The database's folder does not exist yet (a volume not mounted yet, say): the app starts
    anyway (one warning), answers 503, and once the folder exists the next request opens the
    file, switches it to WAL and creates the table."""
    db_path = tmp_path / "not-mounted-yet" / "sessions.db"
    store = SQLiteStore(db_path, timeout=0.5)
    async with app_started_while_down(store, session_log, "SQLiteStore", warned=True) as client:
        db_path.parent.mkdir()
        await assert_serves_again(client)
        assert len(rows(db_path)) == 1
        with raw(db_path) as connection:
            assert connection.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    await asyncio.sleep(0.1)  # let the threads of the failed connections finish (see above)


@pytest.mark.parametrize("value", ["text", -1, 3.5, 10**12], ids=["text", "negative", "real", "huge"])
async def test_a_row_whose_data_is_not_a_blob_is_a_corrupt_record(
    store: SQLiteStore, db_path: Path, session_log: RecordingHandler, value: object
) -> None:
    # SQLite does not enforce a column's type: a row edited by hand can hold anything there.
    async with app_client(store) as client:
        await client.post("/set", json={"user": "ann"})
        with raw(db_path) as connection:
            connection.execute("UPDATE sessions SET data = ?", (value,))
        response = await client.get("/read/user")
        assert response.status_code == 200
        assert response.json() == {"value": None, "id": None}
        assert "WARNING corrupt session record in SQLiteStore" in session_log.text


async def test_a_user_index_edited_by_hand_is_rebuilt_at_the_next_login(
    store: SQLiteStore, db_path: Path, session_log: RecordingHandler
) -> None:
    # A row that holds text can never be the base of a compare-and-set: the index is deleted
    # and written anew, instead of every login of the user failing with 503.
    async with app_client(store) as client:
        assert (await client.post("/switch-user", json={"user": "ann"})).status_code == 200
        with raw(db_path) as connection:
            connection.execute("UPDATE sessions SET data = ? WHERE id = ?", ("hand edited", users.index_key("ann")))
        assert (await client.post("/switch-user", json={"user": "ann"})).status_code == 200
        listed = (await client.get("/my-sessions")).json()
        assert len(listed) == 1
        assert listed[0]["current"] is True
        assert "WARNING corrupt user index in SQLiteStore" in session_log.text
