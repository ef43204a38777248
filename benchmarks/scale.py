"""Scale benchmark: many stored sessions, memory per session, and cleaning expired rows.

Run it with ``scripts/nox -s bench`` or ``python -m tests.servers run python -m benchmarks.scale
[--quick] [--json PATH]`` (the test servers, started as the suite starts them, their URLs in the
environment; ``REDIS_URL`` and ``POSTGRES_URL`` of servers of your own work too). Three parts:

(a) **Latency with many stored sessions.** A handler that reads and writes the session
    (``benchmarks.bench.ours_read_write``, sliding expiry of one hour) is driven in-process with
    ``benchmarks.bench.Driver`` (ASGI, no sockets), each request timed on its own, on every store
    that keeps sessions on the server side (``TARGETS``: MemoryStore, SQLiteStore, PostgresStore,
    RedisStore, RedisStore on the Redis Cluster, MongoStore, WebdisStore) holding 1,000 and then
    1,000,000 sessions. Each store is filled directly: MemoryStore through ``set``, SQLite with
    ``executemany`` in one transaction, PostgreSQL with ``COPY`` (``copy_records_to_table``),
    Redis (also behind the Webdis) with pipelined ``SET ... EX``, the Cluster with a cluster
    pipeline, MongoDB with ``insert_many``; under a unique key prefix, table, file or database,
    deleted or dropped afterwards. Where the server has a keyspace per store (Redis: its logical
    databases, the ``REDIS_URL``'s and the next one) each size has a store of its own and the sizes
    are measured in interleaved rounds, so that drift of the machine hits both alike; on the
    Cluster and the Webdis (one keyspace) one store is measured at each size in turn. MongoStore
    gets 1,000 and 10,000 sessions and fewer requests (``--mongo-sizes``): the MongoDB-wire test
    server (secantusdb) takes time linear in the collection's size for each request.

(b) **Bytes per session** of the same typical small record (an email, a user id and a CSRF
    token) on every store: MemoryStore by ``tracemalloc`` over its ``set`` calls, Redis by ``INFO
    memory`` before and after (and ``MEMORY USAGE`` of sample keys), PostgreSQL by
    ``pg_total_relation_size`` after ``VACUUM``, SQLite by ``page_count * page_size`` after
    ``VACUUM``, MongoDB by ``collStats``, the cookie store by the bytes of its ``Set-Cookie``.

(c) **Cleaning expired rows does not stall requests.** PostgresStore and SQLiteStore tables get
    100,000 expired rows; the read+write handler's latency is measured first without cleanup, then
    while ``store.delete_expired()`` runs concurrently in the same event loop.

Garbage collection stays on in every timing: its pauses are part of a real request's latency.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import itertools
import json
import logging
import os
import secrets
import sqlite3
import statistics
import tempfile
import time
import tracemalloc
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
from litestar import Litestar, get

from benchmarks.bench import SECRET, Driver, ours_login, ours_read_write
from benchmarks.http_load import machine_info, server_env, warn_if_busy
from litestar_flash_sessions import Session, SessionConfig, SessionPlugin
from litestar_flash_sessions.commit import new_session_id
from litestar_flash_sessions.stores import MemoryStore, SessionStore

TTL = 3600
"""Sliding expiry of the measured sessions, in seconds; filler sessions expire within it too."""
FILL_BATCH = 20_000
_encode = msgspec.msgpack.Encoder().encode


def typical_record(i: int) -> bytes:
    """A stored session as the plugin encodes it: ``[data, flashes]`` in MessagePack."""
    return _encode([{"email": f"user{i}@example.com", "user_id": i, "csrf": secrets.token_hex(16)}, {}])


def unique_name() -> str:
    """A table name or key prefix no one else uses: ``bench_scale_<pid>_<random>``."""
    return f"bench_scale_{os.getpid()}_{secrets.token_hex(3)}"


def app_on(store: SessionStore) -> Litestar:
    """The in-process benchmark's read+write handler and login on ``store``; no periodic cleanup."""
    config = SessionConfig(store=store, expire_after_seconds=TTL, cleanup_interval_seconds=None)
    return Litestar([ours_read_write, ours_login], plugins=[SessionPlugin(config)])


def summary(samples: list[float]) -> dict[str, float]:
    """Mean, median, p99 and max of per-request microseconds."""
    ordered = sorted(samples)
    return {
        "requests": len(ordered),
        "mean_us": round(statistics.fmean(ordered), 1),
        "p50_us": round(statistics.median(ordered), 1),
        "p99_us": round(ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))], 1),
        "max_us": round(ordered[-1], 1),
    }


async def timed(driver: Driver) -> float:
    """One request's microseconds."""
    start = time.perf_counter_ns()
    await driver.request()
    return (time.perf_counter_ns() - start) / 1000


async def latencies(driver: Driver, requests: int) -> list[float]:
    return [await timed(driver) for _ in range(requests)]


async def logged_in_driver(app: Litestar, warmup: int) -> Driver:
    driver = Driver(app)
    await driver.log_in()
    if not driver.cookie:
        raise RuntimeError("the login handler set no cookie")
    await latencies(driver, warmup)
    return driver


# ---------------------------------------------------------------- (a) many stored sessions


async def fill_redis(client: Any, prefix: str, start: int, stop: int) -> None:
    """``SET prefix+id record EX ttl`` for sessions ``start`` to ``stop``, pipelined in batches."""
    for first in range(start, stop, FILL_BATCH):
        pipe = client.pipeline(transaction=False)
        for i in range(first, min(first + FILL_BATCH, stop)):
            pipe.set(prefix + new_session_id(), typical_record(i), ex=TTL)
        await pipe.execute()


async def delete_redis_prefix(client: Any, prefix: str) -> int:
    """``UNLINK`` every key under ``prefix`` (SCAN in pages of 10,000)."""
    deleted = 0
    batch: list[bytes] = []
    async for key in client.scan_iter(match=f"{prefix}*", count=10_000):
        batch.append(key)
        if len(batch) >= 10_000:
            deleted += await client.unlink(*batch)
            batch = []
    if batch:
        deleted += await client.unlink(*batch)
    return deleted


def postgres_rows(start: int, stop: int, expires: datetime, spread: float) -> Iterator[tuple[str, bytes, datetime]]:
    """Rows for ``COPY``: expiries spread over ``spread`` seconds after ``expires``."""
    step = spread / max(stop - start, 1)
    for i in range(start, stop):
        yield new_session_id(), typical_record(i), expires + timedelta(seconds=(i - start) * step)


async def copy_postgres(url: str, table: str, rows: Iterator[tuple[str, bytes, datetime]], chunk: int = 50_000) -> None:
    import asyncpg

    connection = await asyncpg.connect(url)
    try:
        while batch := list(itertools.islice(rows, chunk)):
            await connection.copy_records_to_table(table, records=batch, columns=("id", "data", "expires_at"))
        await connection.execute(f'ANALYZE "{table}"')
    finally:
        await connection.close()


async def drop_postgres_table(url: str, table: str) -> None:
    import asyncpg

    connection = await asyncpg.connect(url)
    try:
        await connection.execute(f'DROP TABLE IF EXISTS "{table}"')
    finally:
        await connection.close()


async def fill_cluster(client: Any, prefix: str, start: int, stop: int) -> None:
    """As :func:`fill_redis`, on a Redis Cluster: the pipeline splits each batch by node."""
    for first in range(start, stop, FILL_BATCH):
        pipe = client.pipeline(transaction=False)
        for i in range(first, min(first + FILL_BATCH, stop)):
            pipe.execute_command("SET", prefix + new_session_id(), typical_record(i), "EX", TTL)
        await pipe.execute()


async def delete_cluster_prefix(client: Any, prefix: str) -> int:
    """``UNLINK`` every key under ``prefix`` on every primary, one key a command, pipelined."""
    keys = [key async for key in client.scan_iter(match=f"{prefix}*", count=10_000)]
    for first in range(0, len(keys), FILL_BATCH):
        pipe = client.pipeline(transaction=False)
        for key in keys[first : first + FILL_BATCH]:
            pipe.execute_command("UNLINK", key)
        await pipe.execute()
    return len(keys)


def redis_client(url: str, db_offset: int = 0) -> Any:
    """A client on ``url``'s database plus ``db_offset`` (Redis has 16 logical databases)."""
    from redis.asyncio import Redis

    client = Redis.from_url(url)
    if db_offset:
        db = int(client.connection_pool.connection_kwargs.get("db") or 0)
        client = Redis.from_url(url, db=(db + db_offset) % 16)
    return client


Target = Any
"""``target(env, index)``: an async context manager yielding ``(store, fill)`` for the ``index``-th
size, ``fill(start, stop)`` adding sessions ``start`` to ``stop`` directly, and cleaning up after."""


@contextlib.asynccontextmanager
async def memory_target(env: dict[str, str], _: int) -> AsyncIterator[tuple[SessionStore, Any]]:
    """A MemoryStore of its own, large enough for every session; filled through ``set``."""
    store = MemoryStore(max_sessions=2_100_000)

    async def fill(start: int, stop: int) -> None:
        for i in range(start, stop):
            await store.set(new_session_id(), typical_record(i), TTL, None)

    yield store, fill


@contextlib.asynccontextmanager
async def sqlite_target(env: dict[str, str], _: int) -> AsyncIterator[tuple[SessionStore, Any]]:
    """An SQLiteStore on a temporary file; filled with ``executemany`` in one transaction."""
    from litestar_flash_sessions.stores.sqlite import SQLiteStore

    with tempfile.TemporaryDirectory(prefix="lfs-bench-") as folder:
        path = Path(folder) / "sessions.db"

        async def fill(start: int, stop: int) -> None:
            expires = time.time() + TTL / 2
            step = TTL / 2 / max(stop - start, 1)
            with contextlib.closing(sqlite3.connect(path)) as db:  # the store created the table
                with db:
                    db.executemany(
                        "INSERT INTO sessions (id, data, expires_at) VALUES (?, ?, ?)",
                        (
                            (new_session_id(), typical_record(i), expires + (i - start) * step)
                            for i in range(start, stop)
                        ),
                    )
                db.execute("ANALYZE")
                db.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # not left for a measured commit

        yield SQLiteStore(path), fill


@contextlib.asynccontextmanager
async def postgres_target(env: dict[str, str], _: int) -> AsyncIterator[tuple[SessionStore, Any]]:
    """A PostgresStore on a unique table, filled with ``COPY``; the table is dropped at the end."""
    from litestar_flash_sessions.stores.postgres import PostgresStore

    url = env["POSTGRES_URL"]
    table = unique_name()
    try:

        async def fill(start: int, stop: int) -> None:
            expires = datetime.now(UTC) + timedelta(seconds=TTL / 2)
            await copy_postgres(url, table, postgres_rows(start, stop, expires, TTL / 2))

        yield PostgresStore(url, table), fill
    finally:
        await drop_postgres_table(url, table)


@contextlib.asynccontextmanager
async def redis_target(env: dict[str, str], db_offset: int) -> AsyncIterator[tuple[SessionStore, Any]]:
    """A RedisStore under a unique prefix in database ``REDIS_URL's db + db_offset``, and a filler.

    Redis keeps one keyspace per database, so each size gets a database of its own (otherwise
    the small store would sit in the big keyspace). The prefix's keys are deleted at the end.
    """
    from litestar_flash_sessions.stores.redis import RedisStore

    client = redis_client(env["REDIS_URL"], db_offset)
    prefix = unique_name() + ":"
    try:

        async def fill(start: int, stop: int) -> None:
            await fill_redis(client, prefix, start, stop)

        yield RedisStore(client, prefix=prefix), fill
    finally:
        await delete_redis_prefix(client, prefix)
        await client.aclose()


@contextlib.asynccontextmanager
async def cluster_target(env: dict[str, str], _: int) -> AsyncIterator[tuple[SessionStore, Any]]:
    """A RedisStore on the Redis Cluster under a unique prefix (a cluster has one keyspace)."""
    from redis.asyncio import RedisCluster

    from litestar_flash_sessions.stores.redis import RedisStore

    client = RedisCluster.from_url(env["REDIS_CLUSTER_URL"])
    prefix = unique_name() + ":"
    try:

        async def fill(start: int, stop: int) -> None:
            await fill_cluster(client, prefix, start, stop)

        yield RedisStore(client, prefix=prefix), fill
    finally:
        await delete_cluster_prefix(client, prefix)
        await client.aclose()


@contextlib.asynccontextmanager
async def webdis_target(env: dict[str, str], _: int) -> AsyncIterator[tuple[SessionStore, Any]]:
    """A WebdisStore under a unique prefix, filled straight into the Redis behind it (its
    database 0, the only one the Webdis is configured for: one keyspace)."""
    from litestar_flash_sessions.stores.webdis import WebdisStore

    client = redis_client(env["REDIS_URL"].rsplit("/", 1)[0] + "/0")
    prefix = unique_name() + ":"
    try:

        async def fill(start: int, stop: int) -> None:
            await fill_redis(client, prefix, start, stop)

        yield WebdisStore(env["WEBDIS_URL"], prefix=prefix), fill
    finally:
        await delete_redis_prefix(client, prefix)
        await client.aclose()


@contextlib.asynccontextmanager
async def mongo_target(env: dict[str, str], _: int) -> AsyncIterator[tuple[SessionStore, Any]]:
    """A MongoStore in a unique database, filled with ``insert_many``; the database is dropped."""
    from pymongo import AsyncMongoClient

    from litestar_flash_sessions.stores.mongo import MongoStore

    client: Any = AsyncMongoClient(env["MONGO_URL"])
    name = unique_name()
    try:

        async def fill(start: int, stop: int) -> None:
            expires = datetime.now(UTC) + timedelta(seconds=TTL / 2)
            collection = client[name]["sessions"]
            for first in range(start, stop, FILL_BATCH):
                documents = [
                    {"_id": new_session_id(), "data": typical_record(i), "expires_at": expires}
                    for i in range(first, min(first + FILL_BATCH, stop))
                ]
                await collection.insert_many(documents, ordered=False)

        yield MongoStore(client[name]), fill
    finally:
        await client.drop_database(name)
        await client.close()


OPTIONAL_SERVERS = ("REDIS_CLUSTER_URL", "MONGO_URL", "WEBDIS_URL")
"""Servers whose store is left out, with a message, when their variable is not set."""

TARGETS: dict[str, tuple[Target, str | None, bool]] = {
    # name: (target, the server's variable, whether each size gets a keyspace of its own)
    "MemoryStore": (memory_target, None, True),
    "SQLiteStore": (sqlite_target, None, True),
    "PostgresStore": (postgres_target, "POSTGRES_URL", True),
    "RedisStore": (redis_target, "REDIS_URL", True),
    "RedisStore (Cluster)": (cluster_target, "REDIS_CLUSTER_URL", False),
    "MongoStore": (mongo_target, "MONGO_URL", True),
    "WebdisStore": (webdis_target, "WEBDIS_URL", False),
}


async def measure_rounds(drivers: dict[int, Driver], requests: int, rounds: int) -> dict[int, dict[str, float]]:
    """Warm up, then ``rounds`` rounds of ``requests // rounds`` requests on each driver in turn."""
    samples: dict[int, list[float]] = {size: [] for size in drivers}
    round_means: dict[int, list[float]] = {size: [] for size in drivers}
    for driver in drivers.values():
        await latencies(driver, max(requests // 5, 50))  # warm up
    for _ in range(rounds):
        for size, driver in drivers.items():
            chunk = await latencies(driver, requests // rounds)
            samples[size] += chunk
            round_means[size].append(statistics.fmean(chunk))
    return {
        size: {**summary(samples[size]), "median_round_mean_us": round(statistics.median(round_means[size]), 1)}
        for size in drivers
    }


async def scale_case(
    target: Target, env: dict[str, str], sizes: list[int], requests: int, rounds: int, *, separate: bool = True
) -> dict[str, Any]:
    """Measure the read+write handler by stored sessions.

    ``separate``: one store per size, the sizes interleaved round by round. Otherwise (a server
    with one keyspace: a Redis Cluster, the Webdis's database) one store, measured at each size
    in turn, filled up to the next size in between.
    """
    results: dict[str, Any] = {}
    async with contextlib.AsyncExitStack() as stack:
        drivers: dict[int, Driver] = {}
        fills = {}
        for offset, size in enumerate(sizes if separate else sizes[:1]):
            store, fill = await stack.enter_async_context(target(env, offset))
            app = app_on(store)
            await stack.enter_async_context(app.lifespan())  # creates the table, opens the pool
            drivers[size] = await logged_in_driver(app, 50)  # the driver's session is one of them
            fills[size] = fill
        stored = 1
        for size in sizes:
            driver, fill = (drivers[size], fills[size]) if separate else (drivers[sizes[0]], fills[sizes[0]])
            started = time.monotonic()
            await fill(1 if separate else stored, size)
            stored = size
            results[str(size)] = {"fill_s": round(time.monotonic() - started, 1)}
            print(f"  {size:,} sessions stored in {results[str(size)]['fill_s']} s", flush=True)
            if not separate:
                results[str(size)].update((await measure_rounds({size: driver}, requests, rounds))[size])
        if separate:
            for size, figures in (await measure_rounds(drivers, requests, rounds)).items():
                results[str(size)].update(figures)
    return results


# ---------------------------------------------------------------- (b) bytes per session


def per_session(total: float, count: int, method: str) -> dict[str, Any]:
    return {"sessions": count, "bytes_per_session": round(total / count, 1), "method": method}


async def memory_bytes(count: int) -> dict[str, Any]:
    """Bytes ``tracemalloc`` sees allocated per session kept by ``MemoryStore.set``."""
    store = MemoryStore(max_sessions=count + 1)
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(count):
            await store.set(new_session_id(), typical_record(i), TTL, None)
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert len(store) == count
    return per_session(after - before, count, "tracemalloc, Python heap")


async def redis_bytes(url: str, count: int) -> dict[str, Any]:
    """``INFO memory`` ``used_memory`` before and after ``count`` keys (in a database of their own),
    and the mean ``MEMORY USAGE`` of 200 of them."""
    client = redis_client(url, 2)
    prefix = unique_name() + ":"
    try:
        before = (await client.info("memory"))["used_memory"]
        await fill_redis(client, prefix, 0, count)
        after = (await client.info("memory"))["used_memory"]
        keys = [key async for key in client.scan_iter(match=f"{prefix}*", count=1_000)][:200]
        usage = [await client.memory_usage(key, samples=0) for key in keys]
    finally:
        await delete_redis_prefix(client, prefix)
        await client.aclose()
    result = per_session(after - before, count, "INFO used_memory delta (server-wide: other clients move it)")
    result["memory_usage_bytes"] = round(statistics.fmean(usage), 1)
    return result


async def postgres_bytes(url: str, count: int) -> dict[str, Any]:
    """``pg_total_relation_size`` (heap, TOAST, both indexes) of a table of ``count`` rows, after
    ``VACUUM``, over ``count``; the empty table's size taken off."""
    import asyncpg

    from litestar_flash_sessions.stores.postgres import PostgresStore

    table = unique_name()
    try:
        async with PostgresStore(url, table).lifespan():  # creates the table and its index
            pass
        connection = await asyncpg.connect(url)
        try:
            size = f"SELECT pg_total_relation_size('\"{table}\"')"
            empty = await connection.fetchval(size)
            expires = datetime.now(UTC) + timedelta(seconds=TTL)
            await copy_postgres(url, table, postgres_rows(0, count, expires, TTL))
            await connection.execute(f'VACUUM ANALYZE "{table}"')
            full = await connection.fetchval(size)
            heap = await connection.fetchval(f"SELECT pg_relation_size('\"{table}\"')")
        finally:
            await connection.close()
    finally:
        await drop_postgres_table(url, table)
    result = per_session(full - empty, count, "pg_total_relation_size after VACUUM (table, TOAST, indexes)")
    result["heap_bytes"] = round(heap / count, 1)
    return result


async def sqlite_bytes(count: int) -> dict[str, Any]:
    """``page_count * page_size`` of the database after ``VACUUM``, less the empty one's, over ``count``."""
    from litestar_flash_sessions.stores.sqlite import SQLiteStore

    with tempfile.TemporaryDirectory(prefix="lfs-bench-") as folder:
        path = Path(folder) / "sessions.db"
        async with SQLiteStore(path).lifespan():  # creates the table and its index
            pass

        def pages(db: sqlite3.Connection) -> int:
            db.execute("VACUUM")
            return int(db.execute("PRAGMA page_count").fetchone()[0]) * int(
                db.execute("PRAGMA page_size").fetchone()[0]
            )

        with contextlib.closing(sqlite3.connect(path)) as db:
            empty = pages(db)
            expires = time.time() + TTL
            with db:
                db.executemany(
                    "INSERT INTO sessions (id, data, expires_at) VALUES (?, ?, ?)",
                    ((new_session_id(), typical_record(i), expires + i / count) for i in range(count)),
                )
            full = pages(db)
    return per_session(full - empty, count, "page_count * page_size after VACUUM (table and indexes)")


async def mongo_bytes(url: str, count: int) -> dict[str, Any]:
    """``collStats``' ``size`` and ``storageSize`` (plus ``totalIndexSize``) over ``count`` documents."""
    from pymongo import AsyncMongoClient

    from litestar_flash_sessions.stores.mongo import MongoStore

    client: Any = AsyncMongoClient(url)
    name = unique_name()
    try:
        async with MongoStore(client[name]).lifespan():  # creates the collection's TTL index
            pass
        expires = datetime.now(UTC) + timedelta(seconds=TTL)
        collection = client[name]["sessions"]
        for first in range(0, count, FILL_BATCH):
            documents = [
                {"_id": new_session_id(), "data": typical_record(i), "expires_at": expires}
                for i in range(first, min(first + FILL_BATCH, count))
            ]
            await collection.insert_many(documents, ordered=False)
        stats = await client[name].command("collStats", "sessions")
    finally:
        await client.drop_database(name)
        await client.close()
    total = stats.get("storageSize", 0) + stats.get("totalIndexSize", 0)
    result = per_session(total, count, "collStats storageSize + totalIndexSize")
    result["document_bytes"] = round(stats.get("size", 0) / count, 1)
    result["index_bytes"] = round(stats.get("totalIndexSize", 0) / count, 1)
    return result


@get("/login-typical")
async def typical_login(session: Session) -> str:
    """Puts the typical record's data into the session, as a login would."""
    for key, value in msgspec.msgpack.decode(typical_record(123_456))[0].items():
        session.set(key, value)
    return "ok"


async def cookie_bytes() -> dict[str, Any]:
    """The bytes of the ``Set-Cookie`` headers CookieStore sends for the typical record, and of
    the ``name=value`` pairs the browser sends back with every request."""
    from litestar_flash_sessions.stores import CookieStore

    config = SessionConfig(store=CookieStore(SECRET), expire_after_seconds=TTL, cleanup_interval_seconds=None)
    app = Litestar([typical_login], plugins=[SessionPlugin(config)])
    async with app.lifespan():
        headers = await Driver(app).request("/login-typical")
    cookies = [value for name, value in headers if name == b"set-cookie"]
    return {
        "sessions": 1,
        "bytes_per_session": sum(len(b"set-cookie: ") + len(value) for value in cookies),
        "method": "Set-Cookie headers of the response (in the browser, not on a server)",
        "cookies": len(cookies),
        "request_cookie_bytes": sum(len(value.split(b";", 1)[0]) for value in cookies),
    }


async def bytes_per_session(env: dict[str, str], count: int) -> dict[str, Any]:
    sample = typical_record(123_456)
    stores: dict[str, Any] = {"MemoryStore": await memory_bytes(count), "SQLiteStore": await sqlite_bytes(count)}
    if env.get("POSTGRES_URL"):
        stores["PostgresStore"] = await postgres_bytes(env["POSTGRES_URL"], count)
    if env.get("REDIS_URL"):
        stores["RedisStore"] = await redis_bytes(env["REDIS_URL"], count)
    if env.get("MONGO_URL"):
        stores["MongoStore"] = await mongo_bytes(env["MONGO_URL"], count)
    stores["CookieStore"] = await cookie_bytes()
    return {"record_bytes": len(sample), "record": msgspec.msgpack.decode(sample), "stores": stores}


# ---------------------------------------------------------------- (c) cleanup under load


async def cleanup_case(store: SessionStore, insert_expired: Any, rows: int, requests: int) -> dict[str, Any]:
    """p99 of the read+write handler without cleanup, then while ``delete_expired`` runs."""
    app = app_on(store)
    async with app.lifespan():
        await insert_expired(rows)
        driver = await logged_in_driver(app, max(requests // 5, 50))
        baseline = await latencies(driver, requests)

        async def clean() -> tuple[int, float]:
            started = time.perf_counter()
            deleted = await store.delete_expired()
            return deleted, time.perf_counter() - started

        task = asyncio.create_task(clean())
        during: list[float] = []
        while not task.done():
            during.append(await timed(driver))
        deleted, cleanup_s = await task
        if deleted < rows:
            raise RuntimeError(f"delete_expired deleted {deleted} of {rows} expired rows")
        after = await latencies(driver, requests)
    return {
        "expired_rows": rows,
        "deleted": deleted,
        "cleanup_s": round(cleanup_s, 3),
        "without_cleanup": summary(baseline),
        "during_cleanup": summary(during),
        "after_cleanup": summary(after),
    }


async def postgres_cleanup(url: str, rows: int, requests: int) -> dict[str, Any]:
    from litestar_flash_sessions.stores.postgres import PostgresStore

    table = unique_name()

    async def insert_expired(count: int) -> None:
        expired = datetime.now(UTC) - timedelta(hours=2)
        await copy_postgres(url, table, postgres_rows(0, count, expired, 3600))

    try:
        return await cleanup_case(PostgresStore(url, table), insert_expired, rows, requests)
    finally:
        await drop_postgres_table(url, table)


async def sqlite_cleanup(rows: int, requests: int) -> dict[str, Any]:
    from litestar_flash_sessions.stores.sqlite import SQLiteStore

    with tempfile.TemporaryDirectory(prefix="lfs-bench-") as folder:
        path = Path(folder) / "sessions.db"

        async def insert_expired(count: int) -> None:
            expired = time.time() - 7200
            with contextlib.closing(sqlite3.connect(path)) as db:  # the store created the table
                with db:
                    db.executemany(
                        "INSERT INTO sessions (id, data, expires_at) VALUES (?, ?, ?)",
                        ((new_session_id(), typical_record(i), expired + i * 3600 / count) for i in range(count)),
                    )
                # Copy the fill back into the database now, or the first measured commit would do it.
                db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

        return await cleanup_case(SQLiteStore(path), insert_expired, rows, requests)


# ---------------------------------------------------------------- main


def report(data: dict[str, Any]) -> None:
    if data.get("scale"):
        print("\n(a) read+write handler, in-process driver, microseconds per request")
        print(f"{'store':22} {'sessions':>10} {'mean':>8} {'p50':>8} {'p99':>8} {'fill s':>7}")
        for store, sizes in data["scale"].items():
            for size, r in sizes.items():
                print(
                    f"{store:22} {int(size):>10,} {r['mean_us']:8.1f} {r['p50_us']:8.1f} {r['p99_us']:8.1f}"
                    f" {r['fill_s']:7.1f}"
                )
            small, big = (sizes[str(n)] for n in (min(map(int, sizes)), max(map(int, sizes))))
            p50, p99 = big["p50_us"] / small["p50_us"], big["p99_us"] / small["p99_us"]
            print(f"{'':22} {'ratio':>10} {'':8} {p50:7.2f}x {p99:7.2f}x")
    if data.get("memory"):
        m = data["memory"]
        print(f"\n(b) bytes per session (record of {m['record_bytes']} bytes: {m['record']})")
        for store, r in m["stores"].items():
            extra = {k: v for k, v in r.items() if k not in ("sessions", "bytes_per_session", "method")}
            print(f"    {store:14} {r['bytes_per_session']:8.0f}  over {r['sessions']:,}: {r['method']} {extra or ''}")
    if data.get("cleanup"):
        print("\n(c) read+write handler while delete_expired() runs, microseconds per request")
        print(f"{'store':14} {'when':16} {'requests':>8} {'p50':>8} {'p99':>8} {'max':>9}")
        for store, r in data["cleanup"].items():
            for when in ("without_cleanup", "during_cleanup", "after_cleanup"):
                s = r[when]
                print(
                    f"{store:14} {when.replace('_', ' '):16} {s['requests']:8} {s['p50_us']:8.1f}"
                    f" {s['p99_us']:8.1f} {s['max_us']:9.1f}"
                )
            print(f"{'':14} deleted {r['deleted']:,} expired rows in {r['cleanup_s']:.2f} s")


async def run(args: argparse.Namespace) -> dict[str, Any]:
    warn_if_busy()
    # Litestar's logging config shows INFO: httpx would log each Webdis request, inside the timing.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    env = server_env()  # REDIS_URL and POSTGRES_URL; the others are optional
    env.update({name: os.environ[name] for name in OPTIONAL_SERVERS if os.environ.get(name)})
    data: dict[str, Any] = {"benchmark": "scale", "machine": machine_info()}
    data["settings"] = {
        "sizes": args.sizes,
        "mongo_sizes": args.mongo_sizes,
        "mongo_requests": args.mongo_requests,
        "requests": args.requests,
        "rounds": args.rounds,
        "memory_sessions": args.memory_sessions,
        "expired_rows": args.expired_rows,
        "ttl_s": TTL,
        "load_average": os.getloadavg(),
    }
    if "scale" in args.parts:
        data["scale"] = {}
        data["settings"]["not_interleaved"] = []
        for name in args.stores:
            target, variable, separate = TARGETS[name]
            if variable and not env.get(variable):
                print(f"(a) {name}: {variable} is not set, left out", flush=True)
                continue
            print(f"(a) {name}: filling and measuring ...", flush=True)
            # The MongoDB-wire test server (secantusdb) answers in time linear in the collection's
            # size: MongoStore gets sizes and a number of requests of its own.
            sizes, requests = (
                (args.mongo_sizes, args.mongo_requests) if name == "MongoStore" else (args.sizes, args.requests)
            )
            data["scale"][name] = await scale_case(target, env, sizes, requests, args.rounds, separate=separate)
            if not separate:
                data["settings"]["not_interleaved"].append(name)
    if "memory" in args.parts:
        print("(b) bytes per session ...", flush=True)
        data["memory"] = await bytes_per_session(env, args.memory_sessions)
    if "cleanup" in args.parts:
        print("(c) cleanup under load ...", flush=True)
        data["cleanup"] = {}
        if env.get("POSTGRES_URL"):
            data["cleanup"]["PostgresStore"] = await postgres_cleanup(
                env["POSTGRES_URL"], args.expired_rows, args.requests
            )
        data["cleanup"]["SQLiteStore"] = await sqlite_cleanup(args.expired_rows, args.requests)
    return data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny sizes (CI smoke run)")
    parser.add_argument("--json", type=Path, help="also write the results to this JSON file")
    parser.add_argument("--sizes", type=int, nargs="+", help="stored sessions for (a) (default 1000 1000000)")
    parser.add_argument("--mongo-sizes", type=int, nargs="+", help="the same for MongoStore (default 1000 10000)")
    parser.add_argument("--stores", nargs="+", choices=list(TARGETS), default=list(TARGETS), help="stores for (a)")
    parser.add_argument(
        "--parts", nargs="+", choices=("scale", "memory", "cleanup"), default=["scale", "memory", "cleanup"]
    )
    args = parser.parse_args()
    args.sizes = sorted(args.sizes or ([100, 1_000] if args.quick else [1_000, 1_000_000]))
    args.mongo_sizes = sorted(args.mongo_sizes or ([10, 100] if args.quick else [1_000, 10_000]))
    args.requests = 300 if args.quick else 5000
    args.mongo_requests = 60 if args.quick else 200
    args.rounds = 3 if args.quick else 10
    args.memory_sessions = 1_000 if args.quick else 100_000
    args.expired_rows = 1_000 if args.quick else 100_000
    started = time.monotonic()
    data = asyncio.run(run(args))
    data["elapsed_s"] = round(time.monotonic() - started, 1)
    report(data)
    print(f"\n{data['elapsed_s']:.0f} s in all")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(data, indent=2) + "\n")


if __name__ == "__main__":
    main()
