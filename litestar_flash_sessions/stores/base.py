"""The protocol every server-side session store implements.

A store maps a session id to an opaque record (the bytes of an encoded session) with an
optional idle expiry. It knows nothing about cookies, flashes or Litestar: the middleware does
the rest. Every method is one round trip to the server, so that the cost of a request can be
read off the calls it makes:

* a handler that only reads: one :meth:`SessionStore.get` (which also slides the expiry);
* a handler that changes the session: one ``get`` and one :meth:`SessionStore.set`;
* a handler that does not take the session: none.

:meth:`SessionStore.set` is a compare-and-set on the record that was read, which lets the
middleware merge concurrent changes of one session instead of losing one of them.
"""

from __future__ import annotations

import asyncio
import re
import time
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

__all__ = (
    "SessionStore",
    "StoreUnavailableError",
    "delete_in_batches",
    "guarded",
    "validate_identifier",
    "validate_key_prefix",
)

T = TypeVar("T")

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
_KEY_PREFIX = re.compile(r"[A-Za-z0-9_:.\-]{1,100}")


class StoreUnavailableError(Exception):
    """The store's server could not be reached or did not answer in time.

    The middleware answers ``503 Service Unavailable`` and logs the store's name.
    """


class SessionStore(ABC):
    """A server-side store of session records, keyed by session id."""

    @abstractmethod
    async def get(self, session_id: str, expires_in: int | None) -> bytes | None:
        """Return the record stored under ``session_id``.

        Args:
            session_id: A well-formed session id (the middleware never passes any other).
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
            record: The encoded session.
            expires_in: Seconds until the record expires; ``None`` keeps it until deleted.
            previous: The record this request read, or ``None`` when the id must be new.

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

    async def delete_expired(self) -> int:
        """Delete expired records and return how many were deleted.

        Stores whose server does not expire records by itself (SQL) override this; the plugin
        then calls it every ``SessionConfig.cleanup_interval_seconds``. Reads never return an
        expired record either way.

        Raises:
            StoreUnavailableError: The server could not be reached or timed out.
        """
        return 0

    async def startup(self) -> None:  # noqa: B027 (optional hook, empty by default)
        """Open connections the store owns. The plugin calls it when the app starts."""

    async def shutdown(self) -> None:  # noqa: B027 (optional hook, empty by default)
        """Close connections the store owns. The plugin calls it when the app stops."""


def validate_identifier(name: str, what: str) -> str:
    """Return ``name`` if it is a plain SQL/collection identifier.

    Raises:
        ValueError: ``name`` is not 1 to 63 letters, digits or underscores starting with a
            letter or underscore (so it can never inject SQL).
    """
    if not _IDENTIFIER.fullmatch(name):
        raise ValueError(
            f"{what} {name!r} is not a plain identifier: use 1 to 63 letters, digits or underscores, "
            "starting with a letter or underscore"
        )
    return name


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
