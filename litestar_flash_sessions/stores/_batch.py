"""Concurrent reads of one store, in one process, batched into one round trip.

A store's client costs CPU per command (redis-py's asyncio client about 50 to 90 us, where a
16-key batch costs about 10 us a key), so under concurrency one round trip for many reads is
cheaper than one each. :class:`ReadBatcher` does it without adding latency when there is no
concurrency:

* a read of an idle store goes out at once, alone, in the caller's task, as before;
* reads that arrive while a round trip of the store is out queue up, and go out together, as
  one batch, as soon as it returns (in a task of their own, which picks up the queue when the
  event loop next runs it, so reads that arrive meanwhile join it too);
* each waiter gets its own result, or its own copy of the batch's exception (a
  ``StoreUnavailableError`` from the store's boundary: every waiter answers 503).

At most one round trip of reads is out per store and event loop, so a batch holds every read
that arrived during the previous one (at most ``max_batch``; the rest go in the next). A waiter
keeps its own deadline: when it gives up (its request's time-out), it leaves the queue, or the
batch's answer for it is dropped. Writes never go through here: each stays one compare-and-set.
"""

from __future__ import annotations

import asyncio
import copy
from abc import abstractmethod
from functools import cached_property
from typing import TYPE_CHECKING, ClassVar, Generic, TypeVar

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence

__all__ = ("BatchedReads", "Read", "ReadBatcher", "by_expiry")

K = TypeVar("K")
V = TypeVar("V")

Read = tuple[str, "int | None"]
"""One read: the session id a store's ``get`` was given, and the expiry to slide (``None``: none)."""


class ReadBatcher(Generic[K, V]):
    """Batch the concurrent reads of one store (see the module's docstring).

    Args:
        read_one: Reads one key in one round trip (the store's plain read).
        read_many: Reads several keys in one round trip; returns their values in the same order.
        max_batch: The most keys one call of ``read_many`` gets.
    """

    __slots__ = ("_busy", "_max_batch", "_queue", "_read_many", "_read_one", "_task")

    def __init__(
        self,
        read_one: Callable[[K], Awaitable[V]],
        read_many: Callable[[Sequence[K]], Awaitable[Sequence[V]]],
        max_batch: int = 128,
    ) -> None:
        if max_batch < 2:
            raise ValueError("max_batch must be at least 2")
        self._read_one = read_one
        self._read_many = read_many
        self._max_batch = max_batch
        self._busy: asyncio.AbstractEventLoop | None = None
        """The event loop a round trip of reads is out on, ``None`` when idle."""
        self._queue: list[tuple[K, asyncio.Future[V]]] = []
        self._task: asyncio.Task[None] | None = None

    async def get(self, key: K) -> V:
        """Read ``key``: at once when no read is out, else in the next batch.

        Raises:
            Exception: Whatever ``read_one`` or ``read_many`` raised (each waiter its own copy).
        """
        loop = asyncio.get_running_loop()
        if self._busy is loop:
            future: asyncio.Future[V] = loop.create_future()
            self._queue.append((key, future))
            return await future
        if self._busy is not None:
            if not self._busy.is_closed():  # another loop reads (another thread's, or one that
                return await self._read_one(key)  # stopped and may run again): go alone, untracked
            self._queue.clear()  # left busy by a loop that closed (an app stopped mid-read)
        self._busy = loop
        try:
            return await self._read_one(key)
        finally:
            self._next(loop)

    def _next(self, loop: asyncio.AbstractEventLoop) -> None:
        """Send what queued while the round trip was out, or mark the store idle."""
        if self._busy is not loop:
            return  # another loop took over the batcher meanwhile
        if any(not future.done() for _, future in self._queue):
            self._task = loop.create_task(self._batch(loop))  # held: the loop keeps only a weak reference
        else:
            self._queue.clear()
            self._busy = self._task = None

    async def _batch(self, loop: asyncio.AbstractEventLoop) -> None:
        """Send the queued reads (those still waited for) as one round trip, and answer each."""
        waiting = [(key, future) for key, future in self._queue if not future.done()]
        batch, self._queue = waiting[: self._max_batch], waiting[self._max_batch :]
        try:
            if len(batch) <= 1:  # (all but one, or all, gave up before it started)
                values: Sequence[V] = [await self._read_one(key) for key, _ in batch]
            else:
                values = await self._read_many([key for key, _ in batch])
        except Exception as exc:  # every waiter fails with the batch, each with its own copy
            for _, future in batch:
                if not future.done():
                    future.set_exception(_copy(exc))
        except BaseException:  # cancelled: the loop is shutting down, nobody waits any more
            for _, future in (*batch, *self._queue):
                future.cancel()
            self._queue.clear()
            self._busy = self._task = None
            raise
        else:
            for (_, future), value in zip(batch, values, strict=True):
                if not future.done():
                    future.set_result(value)
        self._next(loop)


def _copy(exc: BaseException) -> BaseException:
    """Return a copy of ``exc`` for one waiter: raising one instance in many tasks would pile up
    their tracebacks on it. Its cause and context stay (the driver's error the store mapped).
    """
    try:
        clone = copy.copy(exc)
    except Exception:  # an exception that cannot be copied: share it
        return exc
    clone.__cause__, clone.__context__ = exc.__cause__, exc.__context__
    clone.__suppress_context__ = exc.__suppress_context__
    return clone.with_traceback(exc.__traceback__)


def by_expiry(reads: Sequence[Read]) -> dict[int | None, list[str]]:
    """Group a batch's session ids by the expiry their reads slide to (one group, normally: every
    request slides by the config's), each id once (concurrent requests of one session).
    """
    groups: dict[int | None, dict[str, None]] = {}
    for session_id, expires_in in reads:
        groups.setdefault(expires_in, {})[session_id] = None
    return {expires_in: list(ids) for expires_in, ids in groups.items()}


class BatchedReads:
    """The ``get`` of a store whose concurrent reads go out in batches (a mixin, before
    ``SessionStore`` in the bases): the store implements :meth:`_read_one`, its one-round-trip
    read as before, and :meth:`_read_many`, several reads in one round trip.
    """

    _max_batch: ClassVar[int] = 128
    """The most reads one call of :meth:`_read_many` gets."""

    async def get(self, session_id: str, expires_in: int | None) -> bytes | None:
        """Return the record stored under ``session_id``, sliding its expiry when ``expires_in``
        is set: at once when no read of the store is out, else in the next batch of reads (one
        round trip for all of them).

        Raises:
            StoreUnavailableError: The server could not be reached or timed out (every read of
                a batch that failed).
        """
        return await self._reads.get((session_id, expires_in))

    @cached_property
    def _reads(self) -> ReadBatcher[Read, bytes | None]:
        """The store's batcher (one per store: its reads share round trips)."""
        return ReadBatcher(self._read_one, self._read_many, self._max_batch)

    @abstractmethod
    async def _read_one(self, read: Read) -> bytes | None:
        """Read one record in one round trip (what ``get`` does when the store is idle)."""

    @abstractmethod
    async def _read_many(self, reads: Sequence[Read]) -> Sequence[bytes | None]:
        """Read several records in one round trip; return them in the order of ``reads``."""
