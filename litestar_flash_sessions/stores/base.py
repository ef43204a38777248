"""The record-store protocol every server-side session store implements.

A store maps a key (a session id) to an opaque record (bytes) with an optional expiry. It knows
nothing about cookies, flashes or Litestar, and implements three primitives, each one round trip
to its server, so that the cost of a request can be read off the calls it makes:

* :meth:`SessionStore.get`: read a record (and slide its expiry, in the same round trip; the
  server stores send the gets of concurrent requests in one round trip, ``stores._batch``);
* :meth:`SessionStore.set`: a compare-and-set on the record that was read;
* :meth:`SessionStore.delete`: drop a record.

On top of them :class:`SessionStore` implements the :class:`~litestar_flash_sessions.backend.SessionBackend`
interface once for every store: loading (one ``get``) and committing (``litestar_flash_sessions.commit``:
every transition a compare-and-set, replayed after a conflict). A handler that only reads makes
one ``get``; one that changes the session one ``get`` and one ``set`` (two ``set`` for a rotation);
one that does not take the session, none.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import numbers
import re
import time
from abc import abstractmethod
from functools import cached_property
from typing import TYPE_CHECKING, Any, TypeVar

from litestar_flash_sessions import commit, lifetime
from litestar_flash_sessions.backend import Loaded, SessionBackend
from litestar_flash_sessions.record import Live

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine

    from litestar_flash_sessions.backend import Outcome
    from litestar_flash_sessions.config import SessionConfig

__all__ = (
    "SessionStore",
    "StoreUnavailableError",
    "delete_in_batches",
    "guarded",
    "stored_bytes",
    "validate_identifier",
    "validate_key_prefix",
)

T = TypeVar("T")

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
_KEY_PREFIX = re.compile(r"[A-Za-z0-9_:.\-]{1,100}")
_SESSION_ID = re.compile(r"[A-Za-z0-9_-]{43}")
"""What :func:`~litestar_flash_sessions.commit.new_session_id` makes: other values never reach a store."""


class StoreUnavailableError(Exception):
    """The store's server could not be reached or did not answer in time.

    The middleware answers ``503 Service Unavailable`` and logs the store's name.
    """


class SessionStore(SessionBackend):
    """A server-side store of session records, keyed by session id.

    Subclasses implement :meth:`get`, :meth:`set` and :meth:`delete` (and, when they own
    connections, :meth:`startup` and :meth:`shutdown`); everything else is shared.
    """

    _timeout: float | None = None
    _lifespans: int = 0
    """How many app lifespans that entered :meth:`lifespan` are running (see there)."""

    @property
    def timeout(self) -> float | None:
        """Seconds all store calls of one request may take together before it answers 503;
        ``None``: as long as the driver waits.
        """
        return self._timeout

    @abstractmethod
    async def get(self, session_id: str, expires_in: int | None) -> bytes | None:
        """Return the record stored under ``session_id``.

        Args:
            session_id: A well-formed session id (the plugin never passes any other).
            expires_in: When not ``None``, also reset the record's expiry to this many seconds
                from now, in the same round trip (sliding expiry).

        Returns:
            The record, or ``None`` when there is none or it has expired, even if the server
            has not reaped it yet.

        Raises:
            StoreUnavailableError: The server could not be reached or timed out.
        """

    @abstractmethod
    async def set(self, session_id: str, record: bytes, expires_in: int | None, previous: bytes | None) -> bool:
        """Store ``record`` under ``session_id`` if the stored record is still ``previous``.

        Args:
            session_id: The session id.
            record: The encoded record.
            expires_in: Seconds until the record expires; ``None`` keeps it until deleted.
            previous: The record this request read, or ``None`` when the id must hold none
                (an expired record counts as none).

        Returns:
            ``True`` if the record was written, ``False`` if another request changed or
            deleted it since it was read (nothing is written then).

        Raises:
            StoreUnavailableError: The server could not be reached or timed out.
        """

    @abstractmethod
    async def delete(self, session_id: str) -> None:
        """Delete the record stored under ``session_id``, if any.

        Raises:
            StoreUnavailableError: The server could not be reached or timed out.
        """

    async def startup(self) -> None:
        """Open what the store owns (a client it created from a URL, a table to create)."""

    async def shutdown(self) -> None:
        """Close what the store owns; a client it was given stays open (it is the caller's)."""

    @contextlib.asynccontextmanager
    async def lifespan(self) -> AsyncIterator[None]:
        """Run :meth:`startup`, then :meth:`shutdown` when the app stops.

        A store whose server is down at start-up does not stop the app from starting: the
        failure is logged once, as a warning, and the store finishes its setup (its pool, its
        table, its index) at the first operation that reaches the server; until then requests
        that use the session answer 503. Any other start-up error (a conflicting index, say) is
        a misconfiguration and still fails the start.

        Lifespans that overlap (two test clients of one app, each on an event loop of its own)
        share the start: the first starts the store, the last to end shuts it down, so that
        the one that ends first does not close what the other still uses.
        """
        first = not self._lifespans  # else started by a lifespan still running
        self._lifespans += 1
        try:
            if first:
                await self._start()
            yield
        finally:
            self._lifespans -= 1
            if not self._lifespans:
                await self.shutdown()

    async def _start(self) -> None:
        """Run :meth:`startup`; a server down then is logged, not raised (see :meth:`lifespan`)."""
        import logging

        try:
            await self.startup()
        except StoreUnavailableError as exc:
            # An app that cannot start while one dependency is down turns a short outage into a
            # crash loop (and takes down the routes that never use the session).
            logging.getLogger("litestar_flash_sessions").warning(
                "session store %s unavailable at start-up; starting anyway, it will finish its setup "
                "at the first request that reaches it (503 until then): %s",
                type(self).__name__,
                exc,
            )

    @cached_property
    def locks(self) -> commit.SessionLocks:
        """The per-session locks of this process's commits to this store."""
        return commit.SessionLocks()

    def unavailable(self, reason: str) -> StoreUnavailableError:
        """Return the error that makes the request a 503, naming this store."""
        return StoreUnavailableError(f"{type(self).__name__}: {reason}")

    async def load(self, token: str | None, config: SessionConfig) -> Loaded:
        """Load the session whose id is ``token``; ids that are not ours never reach the store."""
        if token is None or not _SESSION_ID.fullmatch(token):
            return Loaded.new()
        key = commit.store_key(token)
        timeout = self.timeout
        if timeout is None:  # a store without a server (memory): no deadline to keep
            raw = await self.get(key, config.ttl)
            spent = 0.0
        else:
            started = time.monotonic()
            try:
                async with asyncio.timeout(timeout):
                    raw = await self.get(key, config.ttl)
            except TimeoutError as exc:
                raise self._timed_out() from exc
            spent = time.monotonic() - started
        raw, plain, record = commit.open_record(self, key, raw, config.record_sealer)
        if not isinstance(record, Live):
            return Loaded.new()  # none, expired, corrupt or a tombstone: the id opens nothing
        state = lifetime.on_load(record, config, self.now())
        if state is None:
            return Loaded.new()  # past a timeout
        loaded = Loaded(token, record, key, raw, plain, spent)
        draft = loaded.draft
        draft.stale, draft.touch = state
        return loaded

    def commit(self, loaded: Loaded, config: SessionConfig) -> Coroutine[Any, Any, Outcome]:
        """Commit the request's changes (see :mod:`litestar_flash_sessions.commit`) within what is
        left of the request's time-out after its load.
        """
        if self.timeout is None:  # the commit itself: no coroutine of our own around it
            return commit.commit(self, loaded, config)
        return self._commit_in_time(loaded, config)

    async def _commit_in_time(self, loaded: Loaded, config: SessionConfig) -> Outcome:
        assert self.timeout is not None
        try:
            async with asyncio.timeout(self.timeout - loaded.spent):
                return await commit.commit(self, loaded, config)
        except TimeoutError as exc:
            raise self._timed_out() from exc

    def _timed_out(self) -> StoreUnavailableError:
        return self.unavailable(f"the request's store calls took over {self.timeout} s in all")


def stored_bytes(value: object) -> bytes:
    """Return a record as its server handed it back, as ``bytes``.

    A database whose column or field does not enforce a type (SQLite, MongoDB) can hand back
    anything once someone edited it by hand: text, a number, nothing. Anything but bytes becomes
    ``b""``, which no record decodes from: a corrupt record (logged), so a fresh session, never a 500.
    """
    return bytes(value) if isinstance(value, (bytes, bytearray, memoryview)) else b""


def validate_identifier(name: str, what: str) -> str:
    """Return ``name`` if it is a plain SQL/collection identifier.

    Raises:
        ValueError: ``name`` is not 1 to 63 letters, digits or underscores starting with a
            letter or underscore (so it can never inject SQL).
    """
    if not isinstance(name, str) or not _IDENTIFIER.fullmatch(name):
        raise ValueError(
            f"{what} {name!r} is not a plain identifier: use 1 to 63 letters, digits or underscores, "
            "starting with a letter or underscore"
        )
    return name


def is_positive_seconds(value: object) -> bool:
    """Return whether ``value`` is a positive, finite number of seconds (not a flag: ``True`` is 1)."""
    return not isinstance(value, bool) and isinstance(value, numbers.Real) and 0 < float(value) < math.inf


def validate_timeout(timeout: float | None) -> float | None:
    """Return ``timeout`` if it is ``None`` or a positive, finite number of seconds.

    Raises:
        ValueError: It is not (``0`` or a negative number would answer every request 503,
            ``nan`` never time out, a string fail at the first request).
    """
    if timeout is not None and not is_positive_seconds(timeout):
        raise ValueError(
            f"timeout must be a positive number of seconds, or None to wait as long as the driver, not {timeout!r}"
        )
    return timeout


def validate_key_prefix(prefix: str) -> str:
    """Return ``prefix`` if it is a sound prefix for Redis keys (``"app:session:"`` is).

    Raises:
        ValueError: ``prefix`` is empty (sessions would mix with other keys), longer than 100
            characters, or holds anything but letters, digits, ``_``, ``-``, ``:`` and ``.``.
    """
    if not _KEY_PREFIX.fullmatch(prefix):
        raise ValueError(
            f"prefix {prefix!r} is not a valid Redis key prefix: use 1 to 100 letters, digits, '_', '-', ':' or '.'"
        )
    return prefix


async def guarded(
    awaitable: Awaitable[T], seconds: float | None, store: str, errors: tuple[type[BaseException], ...] = ()
) -> T:
    """Await one store operation, turning a time-out or a connection failure into
    :class:`StoreUnavailableError`.

    Args:
        awaitable: The driver call.
        seconds: Seconds to wait at most; ``None`` waits as long as the driver does.
        store: The store's name, for the error message (and so the log line).
        errors: The driver's own exceptions that mean "unreachable", besides ``OSError`` and
            time-outs.

    Raises:
        StoreUnavailableError: The call timed out or failed with one of those errors.
    """
    unreachable: tuple[type[BaseException], ...] = (TimeoutError, OSError, *errors)
    try:
        async with asyncio.timeout(seconds):  # in this task: cheaper than wait_for's task
            return await awaitable
    except unreachable as exc:
        raise StoreUnavailableError(f"{store}: {type(exc).__name__}: {exc}") from exc


async def delete_in_batches(
    delete_batch: Callable[[], Awaitable[int]],
    batch_size: int,
    after_batch: Callable[[int], Awaitable[None]] | None = None,
) -> int:
    """Delete expired rows batch after batch, in the background of the requests being served.

    After each full batch the cleanup rests as long as the batch took, so that requests sharing
    the database get at least half of its time, however many rows there are to delete.

    Args:
        delete_batch: Deletes at most ``batch_size`` expired rows; returns how many it deleted.
        batch_size: The most rows one call of ``delete_batch`` deletes.
        after_batch: Called with the number of full batches so far, after each one's rest.

    Returns:
        How many rows were deleted in all.
    """
    deleted = batches = 0
    while True:
        started = time.perf_counter()
        count = await delete_batch()
        deleted += count
        if count < batch_size:
            return deleted
        batches += 1
        await asyncio.sleep(time.perf_counter() - started)
        if after_batch is not None:
            await after_batch(batches)
