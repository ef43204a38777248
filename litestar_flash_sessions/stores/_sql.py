"""The SQL both SQL stores run, :class:`~litestar_flash_sessions.stores.sqlite.SQLiteStore` and
:class:`~litestar_flash_sessions.stores.postgres.PostgresStore`: one builder, two dialects.

One table holds the sessions::

    id TEXT PRIMARY KEY, data <blob> NOT NULL, expires_at <timestamp> NULL   -- plus an index on expires_at

``expires_at`` is computed in Python from the store's clock and sent as a parameter (``NULL``:
never expires), so the database's clock plays no part. Every read filters on it, so an expired
row is never returned even before ``delete_expired`` removes it. Each operation is one statement.

The dialects differ only in the placeholders (numbered ``?1`` for SQLite, ``$1`` for asyncpg:
both let one parameter appear twice), the column types and how a time is sent. The statements
stick to what SQLite (3.35 and later), PostgreSQL and CockroachDB all accept: ``INSERT ... ON
CONFLICT (id) DO UPDATE ... WHERE``, ``UPDATE``/``DELETE ... RETURNING``, ``DELETE ... WHERE id
IN (SELECT ... LIMIT n)``, no procedural code, no advisory locks.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ("Dialect", "Statement", "Statements")

Statement = tuple[str, tuple[object, ...]]
"""One statement and its parameters, in placeholder order."""


class Dialect(NamedTuple):
    """What one database needs said its own way."""

    placeholder: str
    """What precedes a parameter's number: ``?`` (SQLite) or ``$`` (PostgreSQL)."""
    blob: str
    """The column type of the record's bytes."""
    timestamp: str
    """The column type of ``expires_at``."""
    at: Callable[[float], object]
    """Turns the clock's seconds since the epoch into an ``expires_at`` parameter of that type."""


class Statements:
    """The statements of one table; the name is a validated identifier, quoted against reserved words.

    Each operation returns its statement and parameters; :attr:`schema` is run once at start-up.
    """

    __slots__ = ("_at", "_delete", "_delete_expired", "_insert", "_replace", "_select", "_touch", "schema")

    def __init__(self, table: str, dialect: Dialect) -> None:
        t = f'"{table}"'
        p1, p2, p3, p4, p5 = (f"{dialect.placeholder}{number}" for number in range(1, 6))
        self._at = dialect.at

        def unexpired(now: str) -> str:
            return f"(expires_at IS NULL OR expires_at > {now})"

        self.schema = (  # the table and its index, created if missing
            f"CREATE TABLE IF NOT EXISTS {t} "
            f"(id TEXT PRIMARY KEY, data {dialect.blob} NOT NULL, expires_at {dialect.timestamp} NULL)",
            f'CREATE INDEX IF NOT EXISTS "{table}_expires_at_idx" ON {t} (expires_at)',
        )
        # The identifier is validated and quoted, and every value a parameter: no injection.
        self._select = f"SELECT data FROM {t} WHERE id = {p1} AND {unexpired(p2)}"  # noqa: S608
        self._touch = f"UPDATE {t} SET expires_at = {p2} WHERE id = {p1} AND {unexpired(p3)} RETURNING data"  # noqa: S608
        self._replace = (
            f"UPDATE {t} SET data = {p2}, expires_at = {p3} "  # noqa: S608
            f"WHERE id = {p1} AND data = {p4} AND {unexpired(p5)} RETURNING 1"
        )
        # The conflict branch fires only over a row that has expired but is still in the table.
        self._insert = (
            f"INSERT INTO {t} (id, data, expires_at) VALUES ({p1}, {p2}, {p3}) "  # noqa: S608
            "ON CONFLICT (id) DO UPDATE SET data = EXCLUDED.data, expires_at = EXCLUDED.expires_at "
            f"WHERE {t}.expires_at IS NOT NULL AND {t}.expires_at <= {p4} RETURNING 1"
        )
        self._delete = f"DELETE FROM {t} WHERE id = {p1}"  # noqa: S608
        self._delete_expired = (
            f"DELETE FROM {t} WHERE id IN (SELECT id FROM {t} WHERE expires_at <= {p1} LIMIT {p2}) RETURNING 1"  # noqa: S608
        )

    def read(self, session_id: str, now: float, expires_in: int | None) -> Statement:
        """Read the unexpired record (one row, ``data``); with ``expires_in``, slide its expiry too."""
        if expires_in is None:
            return self._select, (session_id, self._at(now))
        return self._touch, (session_id, self._at(now + expires_in), self._at(now))

    def write(
        self, session_id: str, record: bytes, now: float, expires_in: int | None, previous: bytes | None
    ) -> Statement:
        """Compare-and-set: a row comes back exactly when the record was written.

        ``previous is None`` inserts, or replaces a row that has expired but is still in the
        table; otherwise the ``UPDATE`` matches only the unexpired row still holding ``previous``.
        """
        expires_at = None if expires_in is None else self._at(now + expires_in)
        if previous is None:
            return self._insert, (session_id, record, expires_at, self._at(now))
        return self._replace, (session_id, record, expires_at, previous, self._at(now))

    def delete(self, session_id: str) -> Statement:
        """Delete the row, if any."""
        return self._delete, (session_id,)

    def delete_expired(self, now: float, limit: int) -> Statement:
        """Delete at most ``limit`` rows expired at ``now``: a row comes back per row deleted."""
        return self._delete_expired, (self._at(now), limit)
