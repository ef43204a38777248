"""Concurrent reads batched into one round trip (``stores._batch.ReadBatcher``), and the stores'
batches on real servers: one ``EVALSHA`` on a standalone Redis, one pipeline per node on a
cluster, one statement per expiry on PostgreSQL and SQLite, one HTTP request to Webdis, an update and a
find on MongoDB; a lone read still
one command, a failed batch a 503 for every request in it.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiosqlite
import asyncpg
import pytest
from pymongo import monitoring
from redis.asyncio import Redis, RedisCluster
from redis.asyncio.cluster import ClusterNode

from litestar_flash_sessions import StoreUnavailableError
from litestar_flash_sessions.stores._batch import ReadBatcher
from litestar_flash_sessions.stores.mongo import MongoStore
from litestar_flash_sessions.stores.postgres import PostgresStore
from litestar_flash_sessions.stores.redis import RedisStore
from litestar_flash_sessions.stores.sqlite import SQLiteStore
from litestar_flash_sessions.stores.webdis import _records
from tests.conftest import RecordingHandler, app_client
from tests.harness_mongo import mongo_client, scratch_database
from tests.harness_postgres import drop_table, unique_table
from tests.harness_redis import open_redis_store, private_redis, redis_fault, server_commands
from tests.harness_webdis import open_webdis_store

# --- the batcher, on reads that answer when the test says ------------------------------------


class FakeReads:
    """``read_one`` and ``read_many`` that log their calls and answer when released."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, list[int]]] = []
        self.release = asyncio.Event()
        self.error: Exception | None = None

    async def one(self, key: int) -> str:
        self.calls.append(("one", [key]))
        await self.release.wait()
        if self.error is not None:
            raise self.error
        return f"v{key}"

    async def many(self, keys: Sequence[int]) -> list[str]:
        self.calls.append(("many", list(keys)))
        await self.release.wait()
        if self.error is not None:
            raise self.error
        return [f"v{key}" for key in keys]


@pytest.fixture
def reads() -> FakeReads:
    return FakeReads()


async def started(*awaitables: Any) -> list[asyncio.Task[Any]]:
    tasks = [asyncio.ensure_future(awaitable) for awaitable in awaitables]
    await asyncio.sleep(0)  # each task runs to its first wait
    return tasks


async def test_a_lone_read_goes_out_at_once_alone(reads: FakeReads) -> None:
    batcher = ReadBatcher(reads.one, reads.many)
    reads.release.set()
    (task,) = await started(batcher.get(1))
    assert reads.calls == [("one", [1])], "sent in the first step of the caller's task: no added latency"
    assert await task == "v1"
    assert await batcher.get(2) == "v2"
    assert await batcher.get(3) == "v3"
    assert reads.calls == [("one", [1]), ("one", [2]), ("one", [3])], "reads one after another: never batched"


async def test_reads_that_arrive_while_one_is_out_go_in_one_batch(reads: FakeReads) -> None:
    batcher = ReadBatcher(reads.one, reads.many)
    tasks = await started(*(batcher.get(key) for key in range(6)))
    assert reads.calls == [("one", [0])], "the first goes out at once; the others wait for it"
    reads.release.set()
    assert await asyncio.gather(*tasks) == [f"v{key}" for key in range(6)]
    assert reads.calls == [("one", [0]), ("many", [1, 2, 3, 4, 5])]
    assert await batcher.get(9) == "v9"
    assert reads.calls[-1] == ("one", [9]), "idle again: a lone read goes alone"


async def test_reads_that_arrive_during_a_batch_go_in_the_next(reads: FakeReads) -> None:
    batcher = ReadBatcher(reads.one, reads.many, max_batch=3)
    first = await started(*(batcher.get(key) for key in range(6)))
    reads.release.set()
    await asyncio.sleep(0)
    second = await started(*(batcher.get(key) for key in range(10, 13)))
    assert await asyncio.gather(*first, *second) == [f"v{key}" for key in (*range(6), *range(10, 13))]
    batches = [keys for kind, keys in reads.calls if kind == "many"]
    assert all(len(keys) <= 3 for keys in batches), "max_batch caps a batch"
    assert sorted(key for keys in batches for key in keys) == [1, 2, 3, 4, 5, 10, 11, 12]
    assert len(reads.calls) == 4, reads.calls


async def test_a_failed_batch_fails_every_waiter_with_its_own_error(reads: FakeReads) -> None:
    batcher = ReadBatcher(reads.one, reads.many)
    reads.error = StoreUnavailableError("RedisStore: ConnectionError: down")
    tasks = await started(*(batcher.get(key) for key in range(5)))
    reads.release.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert all(isinstance(result, StoreUnavailableError) for result in results), results
    assert all(str(result) == "RedisStore: ConnectionError: down" for result in results)
    assert len({id(result) for result in results[1:]}) == 4, "each waiter raises its own copy"
    reads.error = None
    assert await batcher.get(7) == "v7", "the store is usable again after a failed batch"


async def test_a_waiter_that_gives_up_leaves_the_batch(reads: FakeReads) -> None:
    batcher = ReadBatcher(reads.one, reads.many)
    tasks = await started(*(batcher.get(key) for key in range(4)))
    tasks[2].cancel()  # its request's deadline passed while it waited
    reads.release.set()
    assert await asyncio.gather(tasks[0], tasks[1], tasks[3]) == ["v0", "v1", "v3"]
    assert reads.calls == [("one", [0]), ("many", [1, 3])]
    with pytest.raises(asyncio.CancelledError):
        await tasks[2]


async def test_a_lone_read_cancelled_leaves_the_batcher_idle(reads: FakeReads) -> None:
    batcher = ReadBatcher(reads.one, reads.many)
    (task,) = await started(batcher.get(1))
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    reads.release.set()
    assert await batcher.get(2) == "v2"
    assert reads.calls == [("one", [1]), ("one", [2])]


def test_a_batcher_left_busy_by_a_closed_event_loop_serves_the_next_loop(reads: FakeReads) -> None:
    """An app stopped with a read out (its loop closed, the task never finished) must not leave
    later apps' reads queued behind it forever."""
    batcher = ReadBatcher(reads.one, reads.many)
    old = asyncio.new_event_loop()
    task = old.create_task(batcher.get(1))
    old.run_until_complete(asyncio.sleep(0.01))
    old.close()
    assert not task.done(), "the old loop closed with its read still out"

    async def read() -> str:
        reads.release = asyncio.Event()
        reads.release.set()
        return await asyncio.wait_for(batcher.get(2), 2)

    assert asyncio.run(read()) == "v2"


def test_a_loop_that_stops_mid_read_and_runs_again_gets_its_queued_reads_answered() -> None:
    """A loop stopped (not closed) with a read out and one queued, another loop reading
    meanwhile, then the first running again (a reused test loop): no read of it is dropped."""

    async def one(key: int) -> str:
        await asyncio.sleep(0.01)
        return f"v{key}"

    async def many(keys: Sequence[int]) -> list[str]:
        await asyncio.sleep(0.01)
        return [f"v{key}" for key in keys]

    batcher = ReadBatcher(one, many)
    first = asyncio.new_event_loop()
    try:
        leader, waiter = first.create_task(batcher.get(1)), first.create_task(batcher.get(2))
        first.run_until_complete(asyncio.sleep(0.001))  # the leader's read is out, the waiter queued
        assert asyncio.run(asyncio.wait_for(batcher.get(3), 2)) == "v3"

        async def resumed() -> list[str]:
            return [await leader, await asyncio.wait_for(waiter, 2)]

        assert first.run_until_complete(resumed()) == ["v1", "v2"]
    finally:
        first.close()


# --- RedisStore: round trips on the server ---------------------------------------------------


@pytest.fixture
async def standalone(redis_url: str) -> AsyncIterator[RedisStore]:
    async with open_redis_store(redis_url) as opened:
        yield opened


async def test_concurrent_reads_are_one_evalsha_on_redis(standalone: RedisStore, redis_url: str) -> None:
    direct = standalone._client
    ids = [f"{n:043d}" for n in range(8)]
    for sid in ids[:6]:  # two of the eight hold nothing
        await direct.set(standalone.key(sid), f"record {sid}".encode(), ex=50)
    await standalone.get(ids[0], 60)  # a lone read
    expiries = [100 if n % 2 else None for n in range(8)]  # half slide their expiry, half do not
    async with server_commands(redis_url, standalone.prefix) as seen:
        await seen.since_last()
        values = await asyncio.gather(*(standalone.get(sid, ttl) for sid, ttl in zip(ids, expiries, strict=True)))
        commands = await seen.since_last()
    assert values == [f"record {sid}".encode() for sid in ids[:6]] + [None, None]
    assert commands in (["GET", "EVALSHA"], ["GET", "EVALSHA", "EVAL"]), "the first alone, the seven others at once"
    for n, sid in enumerate(ids[:6]):
        ttl = await direct.ttl(standalone.key(sid))
        assert (90 < ttl <= 100) if n % 2 else (ttl <= 60), f"{sid}: the read slid its expiry only when asked: {ttl}"


async def test_concurrent_requests_share_round_trips(standalone: RedisStore, redis_url: str) -> None:
    async with app_client(standalone, expire_after_seconds=100) as client:
        await client.post("/set", json={"user": "ann"})
        async with server_commands(redis_url, standalone.prefix) as seen:
            await seen.since_last()
            responses = await asyncio.gather(*(client.get("/read/user") for _ in range(12)))
            commands = await seen.since_last()
    assert [response.json()["value"] for response in responses] == ["ann"] * 12
    assert "EVALSHA" in commands, commands
    assert len(commands) < 12, f"12 concurrent reads in fewer round trips: {commands}"


async def test_a_cluster_batch_is_one_round_trip_per_node(
    monkeypatch: pytest.MonkeyPatch, redis_cluster_url: str
) -> None:
    sent: list[tuple[str, int]] = []
    execute_pipeline = ClusterNode.execute_pipeline

    async def counted(node: ClusterNode, commands: list[Any]) -> bool:
        sent.append((node.name, len(commands)))
        return await execute_pipeline(node, commands)

    monkeypatch.setattr(ClusterNode, "execute_pipeline", counted)
    async with open_redis_store(redis_cluster_url, cluster=True) as store:
        ids = [f"{n:043d}" for n in range(24)]
        for sid in ids:
            assert await store.set(sid, sid.encode(), 100, None)
        client = store._client
        assert isinstance(client, RedisCluster)
        owners = {node.name for sid in ids[1:] if (node := client.get_node_from_key(store.key(sid)))}
        assert len(owners) > 1, "the keys spread over several nodes"
        sent.clear()
        values = await asyncio.gather(*(store.get(sid, 100) for sid in ids))
        batch = list(sent)
    assert values == [sid.encode() for sid in ids]
    assert sorted(node for node, _ in batch) == sorted(owners), "one pipeline per node that holds keys"
    assert sum(count for _, count in batch) == 23, "the first read went alone, the 23 others in the batch"


async def test_a_failed_batch_answers_503_to_every_request(tmp_path: Path, session_log: RecordingHandler) -> None:
    async with (
        private_redis(tmp_path) as url,
        open_redis_store(url, timeout=0.5) as store,
        app_client(store, expire_after_seconds=100) as client,
    ):
        await client.post("/set", json={"user": "ann"})
        async with redis_fault(url, "masterdown"):
            responses = await asyncio.gather(*(client.get("/read/user") for _ in range(8)))
            assert [response.status_code for response in responses] == [503] * 8
        assert "RedisStore" in session_log.text
        assert not [record for record in session_log.records if record.exc_info], "no 500 with a traceback"
        responses = await asyncio.gather(*(client.get("/read/user") for _ in range(8)))
        assert [response.json()["value"] for response in responses] == ["ann"] * 8


async def test_every_waiter_of_a_failed_batch_gets_the_error(tmp_path: Path) -> None:
    async with (
        private_redis(tmp_path) as url,
        open_redis_store(url, timeout=0.5) as store,
        redis_fault(url, "masterdown"),
    ):
        results = await asyncio.gather(*(store.get(f"{n:043d}", 100) for n in range(6)), return_exceptions=True)
    assert all(isinstance(result, StoreUnavailableError) for result in results), results
    # (A sliding read is a write, which a replica may refuse as READONLY before MASTERDOWN.)
    assert all(any(name in str(result) for name in ("MasterDownError", "ReadOnlyError")) for result in results)


async def test_batched_reads_still_served_out_of_memory(tmp_path: Path) -> None:
    """Out of memory Redis refuses writes, not reads: a batch (a script of GETEX) reads on too."""
    async with private_redis(tmp_path) as url, open_redis_store(url) as store:
        ids = [f"{n:043d}" for n in range(6)]
        async with Redis.from_url(url) as direct:
            for sid in ids:
                await direct.set(store.key(sid), sid.encode())
        async with redis_fault(url, "oom"):
            values = await asyncio.gather(*(store.get(sid, 100) for sid in ids))
    assert values == [sid.encode() for sid in ids]


# --- PostgresStore: a batch is one statement per expiry ---------------------------------------


@pytest.fixture
async def postgres_connection(postgres_url: str) -> AsyncIterator[tuple[PostgresStore, list[str]]]:
    """A PostgresStore on one connection of the test's own, and the statements it runs."""
    url, table = postgres_url, unique_table()
    connection = await asyncpg.connect(url)
    statements: list[str] = []
    connection.add_query_logger(lambda record: statements.append(record.query))
    store = PostgresStore(connection, table)
    await store.startup()
    try:
        yield store, statements
    finally:
        await connection.close()
        await drop_table(url, table)


async def logged(statements: list[str] | None = None) -> None:
    """Let asyncpg's query loggers run (it calls them soon after each query), then clear the log."""
    await asyncio.sleep(0.05)
    if statements is not None:
        statements.clear()


async def test_concurrent_reads_are_one_statement_on_postgres(
    postgres_connection: tuple[PostgresStore, list[str]],
) -> None:
    store, statements = postgres_connection
    ids = [f"{n:043d}" for n in range(8)]
    for sid in ids[:6]:  # two of the eight hold nothing
        assert await store.set(sid, sid.encode(), 50, None)
    await logged(statements)
    values = await asyncio.gather(*(store.get(sid, 100) for sid in ids))
    assert values == [sid.encode() for sid in ids[:6]] + [None, None]
    await logged()
    assert len(statements) == 2, "the first read alone, the seven others in one statement"
    assert statements[1].startswith("UPDATE"), statements[1]
    assert "ANY" in statements[1], statements[1]
    assert await store.get(ids[5], None) == ids[5].encode()

    await logged(statements)
    expiries = [100 if n % 2 else None for n in range(8)]
    values = await asyncio.gather(*(store.get(sid, ttl) for sid, ttl in zip(ids, expiries, strict=True)))
    assert values == [sid.encode() for sid in ids[:6]] + [None, None]
    await logged()
    assert len(statements) == 3, "the first alone, then one statement per expiry: a SELECT and an UPDATE"


async def test_postgres_batches_of_two_processes_never_deadlock(postgres_url: str) -> None:
    """Two stores (two processes' pools) slide the same rows at once, in batches in opposite orders.

    (A guard more than a reproduction: PostgreSQL's index scan over ``ANY`` visits ids in order
    anyway; the store's ``ORDER BY id FOR UPDATE`` makes that order hold whatever the plan.)"""
    url, table = postgres_url, unique_table()
    first, second = PostgresStore(url, table), PostgresStore(url, table)
    await first.startup()
    await second.startup()
    try:
        ids = [f"{n:043d}" for n in range(30)]
        for sid in ids:
            assert await first.set(sid, sid.encode(), 100, None)
        for _ in range(20):
            values = await asyncio.gather(
                *(first.get(sid, 100) for sid in ids), *(second.get(sid, 100) for sid in reversed(ids))
            )
            assert values == [sid.encode() for sid in (*ids, *reversed(ids))]
    finally:
        await first.shutdown()
        await second.shutdown()
        await drop_table(url, table)


async def test_a_failed_postgres_batch_fails_every_waiter(postgres_connection: tuple[PostgresStore, list[str]]) -> None:
    store, _ = postgres_connection
    await store._connection.close()  # the connection is gone: every read is unavailable
    results = await asyncio.gather(*(store.get(f"{n:043d}", 100) for n in range(6)), return_exceptions=True)
    assert all(isinstance(result, StoreUnavailableError) for result in results), results


# --- WebdisStore: a batch is one HTTP request, one script --------------------------------------


async def test_concurrent_reads_are_one_request_to_webdis(redis_url: str, webdis_url: str) -> None:
    async with open_webdis_store(webdis_url) as store:
        ids = [f"{n:043d}" for n in range(8)]
        records = [b"", b"\x00\xff:12:", b"1:x", b"0", b"\x80" * 300, b"ok"]  # binary, and shaped like the framing
        for sid, record in zip(ids, records, strict=False):
            assert await store.set(sid, record, 50, None)
        expiries = [100 if n % 2 else None for n in range(8)]
        async with server_commands(redis_url, store.prefix) as seen:
            await seen.since_last()
            values = await asyncio.gather(*(store.get(sid, ttl) for sid, ttl in zip(ids, expiries, strict=True)))
            commands = await seen.since_last(scripts=True)
    assert values == [*records, None, None]
    assert [name for name in commands if not name.startswith("lua:")] == ["EVAL", "EVAL"], commands
    assert sorted(name for name in commands if name.startswith("lua:")) == ["lua:GET"] * 4 + ["lua:GETEX"] * 4


@pytest.mark.parametrize("result", [b"1", b"2", b"15:abc", b"1x:abc", b"0", b"000", b"13:abcd"])
def test_a_webdis_batch_reply_that_does_not_parse_is_unavailable(result: bytes) -> None:
    with pytest.raises(StoreUnavailableError, match="does not parse"):
        _records(result, 2)


def test_a_webdis_batch_reply_parses() -> None:
    assert _records(b"013:a:b11:0", 3) == [None, b"a:b", b"0"]


# --- SQLiteStore: a batch is one statement per expiry, one trip to aiosqlite's thread ----------


async def test_concurrent_reads_are_one_statement_on_sqlite(tmp_path: Path) -> None:
    async with aiosqlite.connect(tmp_path / "sessions.db", isolation_level=None) as db:
        store = SQLiteStore(db)
        await store.startup()
        ids = [f"{n:043d}" for n in range(8)]
        for sid in ids[:6]:
            assert await store.set(sid, sid.encode(), 50, None)
        statements: list[str] = []
        await db.set_trace_callback(statements.append)
        values = await asyncio.gather(*(store.get(sid, 100) for sid in ids), store.get(ids[0], 100))
        expiries = [100 if n % 2 else None for n in range(8)]
        mixed = await asyncio.gather(*(store.get(sid, ttl) for sid, ttl in zip(ids, expiries, strict=True)))
        await db.set_trace_callback(None)
        rows = await db.execute_fetchall("SELECT id, expires_at FROM sessions")
    records = [sid.encode() for sid in ids[:6]] + [None, None]
    assert values == [*records, ids[0].encode()], "a key read twice in one batch is answered twice"
    assert mixed == records
    assert len(statements) == 5, "each time the first alone, then one statement per expiry in the batch"
    assert "IN (" in statements[1], statements[1]
    assert statements[1].startswith("UPDATE"), statements[1]
    assert all(expires_at > time.time() + 90 for _, expires_at in rows), "every read slid the expiry"


# --- MongoStore: a batch is one update and one find --------------------------------------------


class Commands(monitoring.CommandListener):
    """The names of the commands a pymongo client sends on the sessions' collection."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.command.get(event.command_name) == "sessions":
            self.names.append(event.command_name)

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


async def test_concurrent_reads_are_two_commands_on_mongo(mongo_url: str) -> None:
    commands = Commands()
    async with mongo_client(mongo_url, event_listeners=[commands]) as client, scratch_database(client) as database:
        store = MongoStore(database)
        await store.startup()
        ids = [f"{n:043d}" for n in range(8)]
        for sid in ids[:6]:
            assert await store.set(sid, sid.encode(), 50, None)
        commands.names.clear()
        values = await asyncio.gather(*(store.get(sid, 100) for sid in ids), store.get(ids[0], 100))
        assert values == [sid.encode() for sid in ids[:6]] + [None, None, ids[0].encode()]
        assert commands.names == ["findAndModify", "update", "find"], "the first alone, the others: two commands"
        commands.names.clear()
        values = await asyncio.gather(*(store.get(sid, None) for sid in ids))
        assert values == [sid.encode() for sid in ids[:6]] + [None, None]
        assert commands.names == ["find", "find"], "reads that do not slide: one find for the batch"
        documents = await database["sessions"].find({}).to_list(None)
    soon = datetime.now(UTC).replace(tzinfo=None) + timedelta(seconds=90)  # pymongo hands back naive UTC
    assert all(document["expires_at"] > soon for document in documents), "every read slid the expiry"


def test_reads_from_two_threads_event_loops_at_once_are_each_answered() -> None:
    """A read on another thread's event loop while one is out goes alone, never into the queue
    of a loop that is not its own."""
    started = threading.Event()

    async def read_one(key: int) -> str:
        if key == 1:
            started.set()
            await asyncio.sleep(0.3)
        return f"v{key}"

    async def read_many(keys: Sequence[int]) -> list[str]:
        raise AssertionError("reads of two loops never share a batch")

    batcher = ReadBatcher(read_one, read_many)
    results: dict[str, str] = {}

    async def two_reads() -> str:
        return " ".join(await asyncio.gather(batcher.get(1), asyncio.wait_for(batcher.get(4), 1)))

    thread = threading.Thread(target=lambda: results.update(slow=asyncio.run(two_reads())))
    thread.start()
    assert started.wait(2)
    assert asyncio.run(asyncio.wait_for(batcher.get(2), 0.2)) == "v2", "answered at once, not after the other loop"
    thread.join(2)
    assert results == {"slow": "v1 v4"}, "the other loop's queued read was answered too"
    assert asyncio.run(batcher.get(3)) == "v3"
