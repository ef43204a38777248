"""A store in an SQLite database, through :mod:`aiosqlite`.

One table holds the sessions::

    id TEXT PRIMARY KEY, data BLOB NOT NULL, expires_at REAL NULL   -- plus an index on expires_at

``expires_at`` is in seconds since the epoch, computed in Python from the store's clock (``NULL``:
never expires). Every read filters on it, so an expired row is never returned even before
:meth:`SQLiteStore.delete_expired` removes it. Each operation is one SQL statement, the same as
:class:`~litestar_flash_sessions.stores.postgres.PostgresStore` runs (``litestar_flash_sessions.stores._sql``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import time
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import aiosqlite

from litestar_flash_sessions.stores._batch import BatchedReads, Read, by_expiry
from litestar_flash_sessions.stores._sql import Dialect, Statements
from litestar_flash_sessions.stores.base import (
    SessionStore,
    delete_in_batches,
    guarded,
    stored_bytes,
    validate_identifier,
    validate_timeout,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence

__all__ = ("SQLiteStore",)

_STORE = "SQLiteStore"
_UNREACHABLE: tuple[type[BaseException], ...] = (sqlite3.OperationalError,)
"""Locked, unopenable or unreadable database files: the store is unavailable, not broken."""
_BUSY_SHARE = 0.8
"""Share of the store's timeout that SQLite itself waits for a lock held by another connection.

SQLite then fails with "database is locked" (nothing written) before the asyncio timeout gives up
on a statement that would otherwise still run, late, in aiosqlite's thread.
"""
_DEFAULT_BUSY_TIMEOUT = 5.0
_DELETE_BATCH = 25
"""Rows removed per statement by :meth:`SQLiteStore.delete_expired`: a request's statement waits
behind at most one such batch (a fraction of a millisecond)."""
_MAX_BATCH = 64
"""The most reads one statement takes (SQLite allows 32,766 parameters since 3.32, 999 before)."""
_CHECKPOINT_EVERY = 20
"""Batches between two WAL checkpoints during :meth:`SQLiteStore.delete_expired`."""
_MIN_SQLITE = (3, 35, 0)
"""``RETURNING`` (used to read and slide the expiry in one statement) appeared in SQLite 3.35."""
_SQLITE = Dialect(placeholder="?", blob="BLOB", timestamp="REAL", at=float)
"""Numbered ``?1`` placeholders; times as seconds since the epoch."""


class SQLiteStore(BatchedReads, SessionStore):
    """Keep session records in a table of an SQLite database.

    Given a path, the store owns its connection: it opens it in :meth:`startup` (or at first use),
    switches the file to WAL mode so that several processes can share it, runs every statement in
    autocommit mode, and closes it in :meth:`shutdown`. Given an open ``aiosqlite.Connection``,
    the store uses it as it is and never closes it; if the connection is not in autocommit mode
    (``isolation_level=None``), the store commits after each of its statements, which also commits
    anything else pending on that connection, so give the store a connection of its own.

    Args:
        db: An open ``aiosqlite.Connection``, or the path of the database file.
        table: The table's name, a plain identifier.
        timeout: Seconds the statements of one request may take together (any other statement,
            on its own) before the store counts as unavailable; ``None`` waits as long as SQLite
            does (its busy timeout).
        clock: Seconds since the epoch; injectable so that tests can move time.

    Raises:
        ValueError: ``table`` is not a plain identifier.
        RuntimeError: The Python's SQLite library is older than 3.35.
    """

    __slots__ = ("_clock", "_db", "_lock", "_path", "_ready", "_sql", "_table", "_timeout")

    def __init__(
        self,
        db: aiosqlite.Connection | str | os.PathLike[str],
        table: str = "sessions",
        *,
        timeout: float | None = 5.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if sqlite3.sqlite_version_info < _MIN_SQLITE:
            raise RuntimeError(f"{_STORE} needs SQLite 3.35 or later; this Python has {sqlite3.sqlite_version}")
        self._sql = Statements(validate_identifier(table, "table"), _SQLITE)
        self._table = table
        self._timeout = validate_timeout(timeout)
        self._clock = clock
        self._path = None if isinstance(db, aiosqlite.Connection) else os.fspath(db)
        self._db = db if isinstance(db, aiosqlite.Connection) else None
        self._ready = False
        self._lock = asyncio.Lock()

    _max_batch = _MAX_BATCH

    async def _read_one(self, read: Read) -> bytes | None:
        """One read alone: ``SELECT``, or ``UPDATE ... RETURNING`` to slide the expiry."""
        session_id, expires_in = read
        rows = await self._run(*self._sql.read(session_id, self._clock(), expires_in))
        return stored_bytes(rows[0][0]) if rows else None

    async def _read_many(self, reads: Sequence[Read]) -> list[bytes | None]:
        """Several reads, one statement per expiry among them (one, normally), each a single trip
        to aiosqlite's thread: ``UPDATE ... WHERE id IN (...) RETURNING id, data``, or a
        ``SELECT`` for reads that do not slide.
        """
        now = self._clock()
        groups = by_expiry(reads)
        found: dict[Read, bytes] = {}
        for expires_in, ids in groups.items():
            sql = _batched_read(self._table, len(ids), slide=expires_in is not None)
            times = (now,) if expires_in is None else (now, now + expires_in)
            for row in await self._run(sql, (*times, *ids)):
                found[(row[0], expires_in)] = stored_bytes(row[1])
        return [found.get(read) for read in reads]

    async def set(self, session_id: str, record: bytes, expires_in: int | None, previous: bytes | None) -> bool:
        """Write the record if the stored unexpired record is still ``previous``, in one statement.

        ``previous is None`` inserts, or replaces a row that has expired but is still on disk;
        otherwise the ``UPDATE`` matches only the row still holding ``previous``.
        """
        return bool(await self._run(*self._sql.write(session_id, record, self._clock(), expires_in, previous)))

    async def delete(self, session_id: str) -> None:
        """Delete the row, if any."""
        await self._run(*self._sql.delete(session_id))

    async def delete_expired(self) -> int:
        """Delete every expired row and return how many were deleted.

        Background work that must not stall requests sharing the store's one connection: rows
        go in small batches, one short statement each, and after each batch the cleanup rests as
        long as the batch took, so that requests get at least half of the connection's time. The
        database file's write-ahead log is checkpointed aside: SQLite would otherwise copy it back
        into the database inside whichever commit crossed its threshold, often a request's,
        stalling it for milliseconds; during the cleanup the store's connection does not
        checkpoint, and a second connection, on a thread of its own, does so every few batches
        while requests go on.

        Raises:
            StoreUnavailableError: The database could not be opened, stayed locked or timed out.
        """
        now = self._clock()
        path = await self._database_file()

        async def delete_batch() -> int:
            return len(await self._run(*self._sql.delete_expired(now, _DELETE_BATCH)))

        if path is None:
            return await delete_in_batches(delete_batch, _DELETE_BATCH)

        async def checkpoint_aside(batches: int) -> None:
            if batches % _CHECKPOINT_EVERY == 0:
                await asyncio.to_thread(_checkpoint, path)

        threshold = (await self._run("PRAGMA wal_autocheckpoint", ()))[0][0]
        await self._run("PRAGMA wal_autocheckpoint = 0", ())
        try:
            return await delete_in_batches(delete_batch, _DELETE_BATCH, checkpoint_aside)
        finally:
            await self._run(f"PRAGMA wal_autocheckpoint = {int(threshold)}", ())
            await asyncio.to_thread(_checkpoint, path)

    async def _database_file(self) -> str | None:
        """Return the path of the database file if it is in WAL mode, else ``None`` (in memory, say)."""
        if (await self._run("PRAGMA journal_mode", ()))[0][0] != "wal":
            return None
        files = await self._run("PRAGMA database_list", ())
        return next((str(row[2]) for row in files if row[1] == "main" and row[2]), None)

    async def startup(self) -> None:
        """Open the database file (given a path) and create the table and its index if missing.

        If the file cannot be opened yet (its folder is missing, say), every operation tries
        again until one can; the plugin starts the app all the same.

        Raises:
            StoreUnavailableError: The database could not be opened or stayed locked.
        """
        await guarded(self._connection(), self._timeout, _STORE, _UNREACHABLE)

    async def shutdown(self) -> None:
        """Close the connection if the store opened it; a connection it was given stays open."""
        if self._path is None or self._db is None:
            return
        db, self._db, self._ready = self._db, None, False
        await db.close()

    async def _run(self, sql: str, parameters: Iterable[Any]) -> list[Any]:
        """Run one statement and return its rows, turning lock waits and I/O errors into
        :class:`StoreUnavailableError`.
        """
        return await guarded(self._execute(sql, parameters), self._timeout, _STORE, _UNREACHABLE)

    async def _execute(self, sql: str, parameters: Iterable[Any]) -> list[Any]:
        db = await self._connection()
        rows = list(await db.execute_fetchall(sql, parameters))
        if db.in_transaction:  # only a connection given in Python's default transaction mode
            await db.commit()
        return rows

    async def _connection(self) -> aiosqlite.Connection:
        """Return the connection, opening it (given a path) and creating the table on first use."""
        if self._db is not None and self._ready:
            return self._db
        async with self._lock:  # one opener, even when the first requests arrive together
            if self._db is None:  # only a store given a path is ever without a connection
                self._db = await self._open()
            if not self._ready:
                for statement in self._sql.schema:
                    await self._db.execute_fetchall(statement)
                self._ready = True
            return self._db

    async def _open(self) -> aiosqlite.Connection:
        """Open the store's own connection to its file, in autocommit mode and WAL."""
        assert self._path is not None
        busy = _DEFAULT_BUSY_TIMEOUT if self._timeout is None else self._timeout * _BUSY_SHARE
        db = await aiosqlite.connect(self._path, timeout=busy, isolation_level=None)
        try:
            # WAL lets readers and one writer of other processes work at the same time; with WAL,
            # synchronous=NORMAL stays consistent after a crash and only risks the last commits.
            await db.execute_fetchall("PRAGMA journal_mode=WAL")
            await db.execute_fetchall("PRAGMA synchronous=NORMAL")
        except BaseException:
            await db.close()
            raise
        return db


@lru_cache(maxsize=2 * _MAX_BATCH)
def _batched_read(table: str, count: int, *, slide: bool) -> str:
    """Return the statement of a batch of ``count`` reads of ``table`` (a validated identifier).

    ``?1``: now (an expired row is never returned); with ``slide``, ``?2``: the new expiry; then
    the ids. One statement text per batch size, which SQLite's statement cache keeps prepared.
    """
    first = 3 if slide else 2
    ids = ", ".join(f"?{number}" for number in range(first, first + count))
    where = f"id IN ({ids}) AND (expires_at IS NULL OR expires_at > ?1)"
    if slide:
        return f'UPDATE "{table}" SET expires_at = ?2 WHERE {where} RETURNING id, data'  # noqa: S608
    return f'SELECT id, data FROM "{table}" WHERE {where}'  # noqa: S608


def _checkpoint(path: str) -> None:
    """Copy the WAL of ``path`` back into the database without waiting for anyone (a blocking call)."""
    try:
        with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as connection:
            connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
    except sqlite3.OperationalError:
        pass  # another connection is checkpointing: the WAL gets copied back all the same
