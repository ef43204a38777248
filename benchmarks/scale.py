"""Scale benchmark: many stored sessions, memory per session, and cleaning expired rows.

Run it with ``scripts/nox -s bench`` or ``python -m tests.servers run python -m benchmarks.scale
[--quick] [--json PATH]`` (the test servers, started as the suite starts them, their URLs in the
environment; ``REDIS_URL`` and ``POSTGRES_URL`` of servers of your own work too). Three parts:

(a) **Latency with many stored sessions.** A handler that reads and writes the session
    (``benchmarks.bench.ours_read_write``, sliding expiry of one hour) is driven in-process with
    ``benchmarks.bench.Driver`` (ASGI, no sockets), each request timed on its own, on RedisStore
    and PostgresStore holding 1,000 and then 1,000,000 sessions. The store is filled directly:
    Redis with pipelined ``SET ... EX`` under a unique key prefix, PostgreSQL with ``COPY``
    (``copy_records_to_table``) into a unique table; afterwards the keys are deleted and the table
    dropped. Each size has a store of its own (Redis: its own logical database, since Redis keeps
    one keyspace per database: the ``REDIS_URL``'s and the next one) and the sizes are measured
    in interleaved rounds, so that drift of the machine hits both alike.

(b) **MemoryStore bytes per session.** ``tracemalloc`` over 10,000 ``MemoryStore.set`` calls of a
    typical small record (an email, a user id and a CSRF token), ids from the library's generator.

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
from litestar import Litestar

from benchmarks.bench import Driver, ours_login, ours_read_write
from benchmarks.http_load import machine_info, server_env, warn_if_busy
from litestar_flash_sessions import SessionConfig, SessionPlugin
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


@contextlib.asynccontextmanager
async def redis_target(url: str, db_offset: int) -> AsyncIterator[tuple[SessionStore, Any]]:
    """A RedisStore under a unique prefix in database ``url's db + db_offset``, and a filler.

    Redis keeps one keyspace per database, so each size gets a database of its own (otherwise
    the small store would sit in the big keyspace). The prefix's keys are deleted at the end.
    """
    from redis.asyncio import Redis

    from litestar_flash_sessions.stores.redis import RedisStore

    client = Redis.from_url(url)
    if db_offset:
        db = int(client.connection_pool.connection_kwargs.get("db") or 0)
        client = Redis.from_url(url, db=(db + db_offset) % 16)
    prefix = unique_name() + ":"
    try:

        async def fill(start: int, stop: int) -> None:
            await fill_redis(client, prefix, start, stop)

        yield RedisStore(client, prefix=prefix), fill
    finally:
        await delete_redis_prefix(client, prefix)
        await client.aclose()


@contextlib.asynccontextmanager
async def postgres_target(url: str, _: int) -> AsyncIterator[tuple[SessionStore, Any]]:
    """A PostgresStore on a unique table, and a filler; the table is dropped at the end."""
    from litestar_flash_sessions.stores.postgres import PostgresStore

    table = unique_name()
    try:

        async def fill(start: int, stop: int) -> None:
            expires = datetime.now(UTC) + timedelta(seconds=TTL / 2)
            await copy_postgres(url, table, postgres_rows(start, stop, expires, TTL / 2))

        yield PostgresStore(url, table), fill
    finally:
        await drop_postgres_table(url, table)


async def scale_case(target: Any, url: str, sizes: list[int], requests: int, rounds: int) -> dict[str, Any]:
    """Measure the read+write handler on one store per size, the sizes interleaved round by round."""
    results: dict[str, Any] = {}
    async with contextlib.AsyncExitStack() as stack:
        drivers = {}
        for offset, size in enumerate(sizes):
            store, fill = await stack.enter_async_context(target(url, offset))
            app = app_on(store)
            await stack.enter_async_context(app.lifespan())  # creates the table, opens the pool
            drivers[size] = await logged_in_driver(app, 50)  # the driver's session is one of them
            started = time.monotonic()
            await fill(1, size)
            results[str(size)] = {"fill_s": round(time.monotonic() - started, 1)}
            print(f"  {type(store).__name__}: {size:,} sessions stored in {results[str(size)]['fill_s']} s", flush=True)
        samples: dict[int, list[float]] = {size: [] for size in sizes}
        round_means: dict[int, list[float]] = {size: [] for size in sizes}
        for driver in drivers.values():
            await latencies(driver, max(requests // 5, 50))  # warm up
        for _ in range(rounds):
            for size, driver in drivers.items():
                chunk = await latencies(driver, requests // rounds)
                samples[size] += chunk
                round_means[size].append(statistics.fmean(chunk))
        for size in sizes:
            results[str(size)].update(summary(samples[size]))
            results[str(size)]["median_round_mean_us"] = round(statistics.median(round_means[size]), 1)
    return results


# ---------------------------------------------------------------- (b) MemoryStore bytes per session


async def memory_per_session(count: int) -> dict[str, Any]:
    """Bytes ``tracemalloc`` sees allocated per session kept by ``MemoryStore.set``."""
    store = MemoryStore()
    sample = typical_record(123_456)
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
    return {
        "sessions": count,
        "bytes_per_session": round((after - before) / count, 1),
        "record_bytes": len(sample),
        "record": msgspec.msgpack.decode(sample),
    }


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
        print(f"{'store':14} {'sessions':>10} {'mean':>8} {'p50':>8} {'p99':>8} {'fill s':>7}")
        for store, sizes in data["scale"].items():
            for size, r in sizes.items():
                print(
                    f"{store:14} {int(size):>10,} {r['mean_us']:8.1f} {r['p50_us']:8.1f} {r['p99_us']:8.1f}"
                    f" {r['fill_s']:7.1f}"
                )
    if data.get("memory"):
        m = data["memory"]
        print(f"\n(b) MemoryStore: {m['bytes_per_session']:.0f} bytes per session over {m['sessions']:,} sessions")
        print(f"    (record of {m['record_bytes']} bytes: {m['record']})")
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
    env = server_env()
    data: dict[str, Any] = {"benchmark": "scale", "machine": machine_info()}
    data["settings"] = {
        "sizes": args.sizes,
        "requests": args.requests,
        "rounds": args.rounds,
        "memory_sessions": args.memory_sessions,
        "expired_rows": args.expired_rows,
        "ttl_s": TTL,
    }
    if "scale" in args.parts:
        print("(a) filling and measuring ...", flush=True)
        data["scale"] = {
            "RedisStore": await scale_case(redis_target, env["REDIS_URL"], args.sizes, args.requests, args.rounds),
            "PostgresStore": await scale_case(
                postgres_target, env["POSTGRES_URL"], args.sizes, args.requests, args.rounds
            ),
        }
    if "memory" in args.parts:
        data["memory"] = await memory_per_session(args.memory_sessions)
    if "cleanup" in args.parts:
        print("(c) cleanup under load ...", flush=True)
        data["cleanup"] = {
            "PostgresStore": await postgres_cleanup(env["POSTGRES_URL"], args.expired_rows, args.requests),
            "SQLiteStore": await sqlite_cleanup(args.expired_rows, args.requests),
        }
    return data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny sizes (CI smoke run)")
    parser.add_argument("--json", type=Path, help="also write the results to this JSON file")
    parser.add_argument("--sizes", type=int, nargs="+", help="stored sessions for (a) (default 1000 1000000)")
    parser.add_argument(
        "--parts", nargs="+", choices=("scale", "memory", "cleanup"), default=["scale", "memory", "cleanup"]
    )
    args = parser.parse_args()
    args.sizes = sorted(args.sizes or ([100, 1_000] if args.quick else [1_000, 1_000_000]))
    args.requests = 300 if args.quick else 5000
    args.rounds = 3 if args.quick else 10
    args.memory_sessions = 1_000 if args.quick else 10_000
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
