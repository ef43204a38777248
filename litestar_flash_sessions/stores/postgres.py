"""A store in a PostgreSQL table, through :mod:`asyncpg`; the SQL is also valid on CockroachDB.

One table holds the sessions::

    id TEXT PRIMARY KEY, data BYTEA NOT NULL, expires_at TIMESTAMPTZ NULL   -- plus an index on expires_at

``expires_at`` is computed in Python from the store's clock and sent as a parameter (``NULL``: never
expires), so the server's clock plays no part. Every read filters on it, so an expired row is never
returned even before :meth:`PostgresStore.delete_expired` removes it. Each operation is one
statement: asyncpg prepares each statement once per connection and reuses it.

The statements are those :class:`~litestar_flash_sessions.stores.sqlite.SQLiteStore` runs
(``litestar_flash_sessions.stores._sql``), and stick to what CockroachDB accepts as well:
``INSERT ... ON CONFLICT (id) DO UPDATE ... WHERE``, ``UPDATE``/``DELETE ... RETURNING``, no
PL/pgSQL, no advisory locks.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar, cast

import asyncpg

from litestar_flash_sessions.stores._batch import BatchedReads, Read, by_expiry
from litestar_flash_sessions.stores._sql import Dialect, Statements
from litestar_flash_sessions.stores.base import (
    SessionStore,
    delete_in_batches,
    guarded,
    validate_identifier,
    validate_timeout,
)

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Mapping, Sequence

__all__ = ("PostgresStore",)

T = TypeVar("T")

_STORE = "PostgresStore"
_UNREACHABLE: tuple[type[BaseException], ...] = (
    asyncpg.exceptions.PostgresConnectionError,  # SQLSTATE class 08: connection failed or lost
    asyncpg.exceptions.OperatorInterventionError,  # class 57: server shutting down, starting, query cancelled
    asyncpg.exceptions.InsufficientResourcesError,  # class 53: too many connections, disk full
    asyncpg.exceptions.InterfaceError,  # the connection is closed, the pool is closing
)
_CLOSE_FAILURES: tuple[type[BaseException], ...] = (TimeoutError, OSError, *_UNREACHABLE)
_CREATED_CONCURRENTLY: tuple[type[BaseException], ...] = (
    asyncpg.exceptions.UniqueViolationError,
    asyncpg.exceptions.DuplicateTableError,
    asyncpg.exceptions.DuplicateObjectError,
)
"""What ``CREATE ... IF NOT EXISTS`` raises when another process creates the same table at the same moment."""
_DELETE_BATCH = 250
"""Rows removed per statement by :meth:`PostgresStore.delete_expired`, so that no statement runs long."""


class PostgresStore(BatchedReads, SessionStore):
    """Keep session records in a PostgreSQL (or CockroachDB) table.

    ``pool`` may be:

    * an ``asyncpg`` pool: each operation borrows a connection. The pool's reset query, which
      asyncpg runs whenever a connection goes back (unless the pool was created with ``reset=``),
      costs one more round trip per operation;
    * an ``asyncpg`` connection: operations take turns on it (one query at a time); if the
      connection drops it stays dead, so prefer a pool in production;
    * a DSN string (or :meth:`from_url`): the store creates its own pool in :meth:`startup` (or
      at first use), with ``pool_options`` passed to ``asyncpg.create_pool``. That pool skips
      asyncpg's reset query, since the store leaves no state on its connections.

    Who closes what: a pool the store created from a DSN is the store's, closed in
    :meth:`shutdown` (and created again if the store is used after). A pool or connection passed
    in stays the caller's: the store never closes it.

    Args:
        pool: An ``asyncpg`` pool or connection, or a DSN.
        table: The table's name, a plain identifier.
        timeout: Seconds the statements of one request may take together (any other statement,
            on its own) before the store counts as unavailable; ``None`` waits as long as
            asyncpg does.
        clock: Seconds since the epoch; injectable so that tests can move time.
        pool_options: Keyword arguments for ``asyncpg.create_pool`` (for example ``max_size`` or
            ``ssl``), only with a DSN. The defaults are ``min_size=1`` and ``max_size=10``.

    Raises:
        ValueError: ``table`` is not a plain identifier, or ``pool_options`` come without a DSN.
        TypeError: ``pool`` is neither a pool, a connection nor a string.
    """

    __slots__ = (
        "_batched",
        "_clock",
        "_connection",
        "_dsn",
        "_pool",
        "_pool_options",
        "_query_lock",
        "_ready",
        "_setup_lock",
        "_sql",
        "_timeout",
    )

    def __init__(
        self,
        pool: asyncpg.Pool | asyncpg.Connection | str,
        table: str = "sessions",
        *,
        timeout: float | None = 5.0,
        clock: Callable[[], float] = time.time,
        pool_options: Mapping[str, Any] | None = None,
    ) -> None:
        self._sql = Statements(validate_identifier(table, "table"), _POSTGRES)
        self._batched = _batched_reads(table)
        self._timeout = validate_timeout(timeout)
        self._clock = clock
        self._dsn: str | None = pool if isinstance(pool, str) else None
        self._pool: Any = pool if isinstance(pool, asyncpg.Pool) else None
        self._connection: Any = pool if isinstance(pool, asyncpg.Connection) else None
        if self._dsn is None and self._pool is None and self._connection is None:
            # The type only: a value given by mistake (a DSN as bytes, say) may hold a password.
            raise TypeError(f"{_STORE} needs an asyncpg Pool or Connection, or a DSN string; got {type(pool).__name__}")
        if pool_options is not None and self._dsn is None:
            raise ValueError("pool_options only apply when PostgresStore creates its pool from a DSN")
        connect = {} if timeout is None else {"timeout": timeout}
        self._pool_options = {"min_size": 1, "max_size": 10, "reset": _keep, **connect, **(pool_options or {})}
        self._query_lock = asyncio.Lock()  # a single connection runs one query at a time
        self._setup_lock = asyncio.Lock()  # one pool, one CREATE TABLE, even when first requests race
        self._ready = False

    @classmethod
    def from_url(
        cls,
        dsn: str,
        table: str = "sessions",
        *,
        timeout: float | None = 5.0,
        clock: Callable[[], float] = time.time,
        **pool_options: Any,
    ) -> PostgresStore:
        """Return a store on a pool of its own, created from ``dsn``, which it closes in :meth:`shutdown`.

        The same as passing the DSN to the constructor.

        Args:
            dsn: A PostgreSQL (or CockroachDB) connection URL, ``postgresql://user@host/db``.
            table: As for the constructor.
            timeout: As for the constructor.
            clock: As for the constructor.
            pool_options: Keyword arguments for ``asyncpg.create_pool`` (``max_size``, ``ssl``, ...).

        Raises:
            ValueError: ``table`` is not a plain identifier.
            TypeError: ``dsn`` is not a string (pass a pool or a connection to the constructor).
        """
        if not isinstance(dsn, str):
            raise TypeError(f"{_STORE}.from_url needs a DSN string; pass a pool or connection to {_STORE}(...)")
        return cls(dsn, table, timeout=timeout, clock=clock, pool_options=pool_options)

    async def _read_one(self, read: Read) -> bytes | None:
        """One read alone: ``SELECT``, or ``UPDATE ... RETURNING`` to slide the expiry."""
        session_id, expires_in = read
        return cast("bytes | None", await self._fetchval(*self._sql.read(session_id, self._clock(), expires_in)))

    async def _read_many(self, reads: Sequence[Read]) -> list[bytes | None]:
        """Several reads on one connection, one statement per expiry among them (one, normally:
        every request slides by the config's): ``UPDATE ... WHERE id = ANY($1) RETURNING id, data``,
        or ``SELECT id, data ... WHERE id = ANY($1)`` for reads that do not slide.
        """
        now = self._clock()
        groups = by_expiry(reads)
        select, touch = self._batched

        async def read(connection: Any) -> dict[Read, bytes]:
            found: dict[Read, bytes] = {}
            for expires_in, ids in groups.items():
                if expires_in is None:
                    rows = await connection.fetch(select, ids, _at(now))
                else:
                    rows = await connection.fetch(touch, ids, _at(now), _at(now + expires_in))
                found.update(((row[0], expires_in), row[1]) for row in rows)
            return found

        found = await self._run(read)
        return [found.get(read) for read in reads]

    async def set(self, session_id: str, record: bytes, expires_in: int | None, previous: bytes | None) -> bool:
        """Write the record if the stored unexpired record is still ``previous``, in one statement.

        ``previous is None`` inserts, or replaces a row that has expired but is still in the table;
        otherwise the ``UPDATE`` matches only the row still holding ``previous``. Concurrent writers
        of one row queue on its row lock and each re-checks the condition on the row the one
        before it left.
        """
        statement = self._sql.write(session_id, record, self._clock(), expires_in, previous)
        return await self._fetchval(*statement) is not None

    async def delete(self, session_id: str) -> None:
        """Delete the row, if any."""
        sql, args = self._sql.delete(session_id)
        await self._run(lambda connection: connection.execute(sql, *args))

    async def delete_expired(self) -> int:
        """Delete every expired row and return how many were deleted.

        Rows go in batches of 250, one short statement each, so that no statement holds many row
        locks; after each batch the cleanup rests as long as the batch took, so that requests
        get at least half of the server's time.

        Raises:
            StoreUnavailableError: The server could not be reached or timed out.
        """
        sql, args = self._sql.delete_expired(self._clock(), _DELETE_BATCH)

        async def delete_batch() -> int:
            return len(await self._run(lambda connection: connection.fetch(sql, *args)))

        return await delete_in_batches(delete_batch, _DELETE_BATCH)

    async def init_sessions_table(self) -> None:
        """Create the table and its index if they are missing (as oak_sessions' ``initSessionsTable``).

        :meth:`startup` runs it, and so does the first operation of a store that was never started.

        Raises:
            StoreUnavailableError: The server could not be reached or timed out.
        """
        self._ready = False
        await guarded(self._prepare(), self._timeout, _STORE, _UNREACHABLE)

    async def startup(self) -> None:
        """Create the store's pool (given a DSN) and the table; see :meth:`init_sessions_table`.

        If the server cannot be reached, the store is left unprepared, and every operation tries
        again (creating the pool, then the table) until one reaches the server; the plugin starts
        the app all the same.

        Raises:
            StoreUnavailableError: The server could not be reached or timed out.
        """
        await self.init_sessions_table()

    async def shutdown(self) -> None:
        """Close the pool if the store created it; a pool or connection it was given stays open."""
        if self._dsn is None or self._pool is None:
            return
        pool, self._pool, self._ready = self._pool, None, False
        try:
            await asyncio.wait_for(pool.close(), self._timeout)
        except _CLOSE_FAILURES:
            pool.terminate()  # a server that does not answer cannot hold the app's shutdown

    async def _fetchval(self, query: str, args: tuple[object, ...]) -> object:
        """Return the first column of the first row, or ``None`` when there is no row."""
        return await self._run(lambda connection: connection.fetchval(query, *args))

    async def _run(self, operation: Callable[[Any], Awaitable[T]]) -> T:
        """Run ``operation`` on a connection, turning connection failures and time-outs into
        :class:`StoreUnavailableError`.
        """
        return await guarded(self._on_ready_connection(operation), self._timeout, _STORE, _UNREACHABLE)

    async def _on_ready_connection(self, operation: Callable[[Any], Awaitable[T]]) -> T:
        if not self._ready:
            await self._prepare()
        return await self._on_connection(operation)

    async def _on_connection(self, operation: Callable[[Any], Awaitable[T]]) -> T:
        if self._connection is not None:
            async with self._query_lock:
                return await operation(self._connection)
        # With a timeout on acquire, asyncpg also bounds the clean-up of a connection whose query
        # was cancelled by our timeout, instead of waiting on a server that does not answer.
        async with self._pool.acquire(timeout=self._timeout) as connection:
            return await operation(connection)

    async def _prepare(self) -> None:
        """Create the pool (given a DSN) and the table, once.

        A failure leaves ``_ready`` false, so the next operation runs this again: a pool that
        could not be created is still ``None`` (asyncpg closes a pool that fails to start), and
        one that was created is kept while the table is created on it.
        """
        async with self._setup_lock:
            if self._ready:
                return
            if self._dsn is not None and self._pool is None:
                self._pool = await asyncpg.create_pool(self._dsn, **self._pool_options)
            await self._on_connection(self._create_schema)
            self._ready = True

    async def _create_schema(self, connection: Any) -> None:
        for statement in self._sql.schema:
            try:
                await connection.execute(statement)
            except _CREATED_CONCURRENTLY:
                # Another process created it between our "IF NOT EXISTS" check and our creation,
                # and has committed by now: run it again to see it there.
                await connection.execute(statement)


def _batched_reads(table: str) -> tuple[str, str]:
    """Return the statements of a batch of reads of ``table`` (a validated identifier): the
    ``SELECT`` of reads that do not slide, the ``UPDATE`` of those that do. ``$1``: the ids,
    ``$2``: now (an expired row is never returned), ``$3``: the new expiry.

    The ``UPDATE`` locks its rows in the order of their ids first (``ORDER BY id FOR UPDATE``),
    so that two batches of two processes over the same sessions never deadlock.
    """
    t = f'"{table}"'
    unexpired = f"({t}.expires_at IS NULL OR {t}.expires_at > $2)"
    select = f"SELECT id, data FROM {t} WHERE id = ANY($1::text[]) AND {unexpired}"  # noqa: S608
    touch = (
        f"UPDATE {t} SET expires_at = $3 FROM (SELECT id FROM {t} WHERE id = ANY($1::text[]) "  # noqa: S608
        f"AND {unexpired} ORDER BY id FOR UPDATE) AS locked WHERE {t}.id = locked.id AND {unexpired} "
        f"RETURNING {t}.id, {t}.data"
    )
    return select, touch


async def _keep(connection: Any) -> None:
    """Return a connection to the store's own pool as it is.

    The store sets no session state (no ``SET``, ``LISTEN``, cursors or advisory locks), so
    asyncpg's default reset query would only cost a round trip per operation.
    """


def _at(seconds: float) -> datetime:
    """Convert the clock's seconds since the epoch to a ``TIMESTAMPTZ`` parameter."""
    return datetime.fromtimestamp(seconds, UTC)


_POSTGRES = Dialect(placeholder="$", blob="BYTEA", timestamp="TIMESTAMPTZ", at=_at)
"""asyncpg's ``$1`` placeholders; times as aware datetimes."""
