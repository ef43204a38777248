"""A store in the process's memory: for tests, development and single-process apps.

It holds at most ``max_sessions`` records. A new session that would make more first drops expired
records, then the least recently used ones (a read or a write is a use). No call holds the event
loop for long, however many records there are:

* Records are spread by hash over *shards*, dicts of about ``_SHARD_SIZE`` records at most. A
  Python dict copies its table whole when it grows or reclaims the slots of deleted keys: in one
  dict of a million records that is a stall of 60 to 140 ms every few hundred thousand writes, in
  a shard a tenth of a millisecond.
* A dict keeps its insertion order, and a use re-inserts the record, so each shard is in
  least-recently-used order. Every record also carries the number of the use that last touched
  it, so the least recently used record of the store is the front of the shard whose front is
  oldest; a heap of the shards' fronts finds it in time logarithmic in the number of shards (at
  most ``_MAX_SHARDS``).
* Expired records are dropped when a read or a write meets them; by a sweep that examines a few
  records per new session, resuming where it stopped, and more before a full store drops a live
  record; and by :meth:`MemoryStore.delete_expired`, which yields to the event loop between
  slices of ``_SLICE`` records.
"""

from __future__ import annotations

import asyncio
import heapq
import time
from typing import TYPE_CHECKING

from litestar_flash_sessions.stores.base import SessionStore

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

__all__ = ("MemoryStore",)

_SHARD_SIZE = 2048
"""Records per shard in a full store. Copying the table of a dict of 2,048 records (when it grows
or reclaims deleted slots, or for a sweep's snapshot of its ids) takes about 0.1 ms; of 32,768, 2
to 5 ms. Finding a shard's front skips the slots its dropped fronts left, at most a table's worth
(a few microseconds)."""
_MAX_SHARDS = 1024
"""Beyond 2 million records shards grow instead of multiplying, so that an empty store stays small
and the heap of fronts shallow: at 10 million, shards of about 10,000 records still copy in under
a millisecond."""
_SWEEP_PER_NEW = 4
"""Records the sweep examines per new session. Each new session makes at most one record to
collect later, so anything above one keeps up; four collect an abandoned session within a lap of a
quarter of the store's size in new sessions, for about 2 us each."""
_SWEEP_WHEN_FULL = 256
"""The most records the sweep examines before a full store drops a live record (about 0.15 ms)."""
_SWEEP_WHEN_FULL_MIN = 8
"""The least: a full store whose sweeps keep finding nothing expired shrinks its sweep to this, so
that a flood of new sessions into a store of live ones does not pay 256 examinations each."""
_SLICE = 256
"""Records :meth:`MemoryStore.delete_expired` examines between two yields to the event loop (0.05
to 0.2 ms: records spread over memory cost a cache miss or three each)."""

_Entry = tuple[bytes, float | None, int]
"""A stored record, its expiry on the store's clock (``None``: never) and its last use's number."""


class _Records:
    """Records by session id, in shards kept in least-recently-used order.

    Knows nothing of expiry or capacity policy: :class:`MemoryStore` decides what to drop and when.
    """

    __slots__ = (
        "_count",
        "_fronts",
        "_in_fronts",
        "_mask",
        "_shards",
        "_sweep_keys",
        "_sweep_pos",
        "_sweep_shard",
        "_uses",
    )

    def __init__(self, shard_count: int) -> None:
        # A power of two, so that a shard is picked by masking the id's hash (cached in the str).
        self._mask = shard_count - 1
        self._shards: list[dict[str, _Entry]] = [{} for _ in range(shard_count)]
        self._count = 0
        self._uses = 0  # numbers the uses: within a shard they increase from front to end
        # (use number, shard) for each shard that may hold records. The number is at most that of
        # the shard's front (a front only ever gives way to a younger record), so the top, once
        # checked against its shard, is the least recently used record of the store.
        self._fronts: list[tuple[int, int]] = []
        self._in_fronts = [False] * shard_count  # keeps one heap entry per shard: a bounded heap
        # The sweep's place: a snapshot of one shard's ids (a dict cannot be iterated across
        # changes to it) and how far along it the sweep has got.
        self._sweep_shard = 0
        self._sweep_keys: list[str] = []
        self._sweep_pos = 0

    @property
    def shard_count(self) -> int:
        """How many shards there are."""
        return self._mask + 1

    def __len__(self) -> int:
        return self._count

    def get(self, key: str) -> _Entry | None:
        """Return the entry stored under ``key``, without counting a use."""
        return self._shards[hash(key) & self._mask].get(key)

    def use(self, key: str, record: bytes, expires_at: float | None) -> None:
        """Replace the entry under ``key``, which must exist, making it the most recently used."""
        shard = self._shards[hash(key) & self._mask]
        self._uses += 1
        del shard[key]  # assigning alone would keep the key's place: re-inserting moves it last
        shard[key] = (record, expires_at, self._uses)

    def add(self, key: str, record: bytes, expires_at: float | None) -> None:
        """Add an entry under ``key``, which must not exist, as the most recently used.

        The caller makes room first: this never drops another entry.
        """
        index = hash(key) & self._mask
        self._uses += 1
        self._shards[index][key] = (record, expires_at, self._uses)
        self._count += 1
        if not self._in_fronts[index]:
            heapq.heappush(self._fronts, (self._uses, index))
            self._in_fronts[index] = True

    def read(self, key: str, now: float, expires_in: int | None) -> bytes | None:
        """Return the record under ``key`` and count a use, sliding its expiry to ``expires_in``
        seconds from ``now`` if given; ``None`` if there is none or it has expired at ``now``
        (then it is dropped). One lookup of the shard: this runs per request.
        """
        shard = self._shards[hash(key) & self._mask]
        entry = shard.get(key)
        if entry is None:
            return None
        record, expires_at, _ = entry
        del shard[key]  # dropped, or re-inserted last: the most recently used
        if expires_at is not None and expires_at <= now:
            self._count -= 1
            return None
        self._uses += 1
        shard[key] = (record, expires_at if expires_in is None else now + expires_in, self._uses)
        return record

    def replace(
        self, key: str, record: bytes, expires_at: float | None, previous: bytes | None, now: float
    ) -> bool | None:
        """Compare-and-set of an entry that exists: replace it with ``record`` if it holds
        ``previous`` and has not expired at ``now``, as a use; return whether it was replaced.

        Returns ``None`` without changing anything when there is no live entry under ``key``
        (an expired one is dropped): the caller adds the record, making room first.
        """
        shard = self._shards[hash(key) & self._mask]
        entry = shard.get(key)
        if entry is None:
            return None
        if entry[1] is not None and entry[1] <= now:
            del shard[key]
            self._count -= 1
            return None
        if entry[0] != previous:
            return False
        self._uses += 1
        del shard[key]
        shard[key] = (record, expires_at, self._uses)
        return True

    def __setitem__(self, key: str, value: tuple[bytes, float | None]) -> None:
        """Store ``(record, expires_at)`` under ``key``, whatever it held, as its most recent use."""
        if self.get(key) is None:
            self.add(key, *value)
        else:
            self.use(key, *value)

    def values(self) -> Iterator[_Entry]:
        """Iterate over every entry, shard by shard: for inspection, since it takes time in the
        number of records and the store must not change meanwhile.
        """
        for shard in self._shards:
            yield from shard.values()

    def discard(self, key: str) -> None:
        """Drop the entry under ``key``, if any.

        The shard's heap entry stays as it is: at most the old front's number, it is at most the
        new front's too.
        """
        if self._shards[hash(key) & self._mask].pop(key, None) is not None:
            self._count -= 1

    def drop_least_recently_used(self) -> None:
        """Drop the least recently used entry; there must be one."""
        fronts = self._fronts
        while True:
            number, index = fronts[0]
            shard = self._shards[index]
            if not shard:
                heapq.heappop(fronts)
                self._in_fronts[index] = False
                continue
            front = next(iter(shard.values()))[2]
            if front != number:
                # The shard's front was used or dropped since: record the new one and look again.
                # Every correction follows such a change, so they are few per drop, amortised.
                heapq.heapreplace(fronts, (front, index))
                continue
            del shard[next(iter(shard))]
            self._count -= 1
            if shard:
                heapq.heapreplace(fronts, (next(iter(shard.values()))[2], index))
            else:
                heapq.heappop(fronts)
                self._in_fronts[index] = False
            return

    def sweep(self, now: float, budget: int) -> int:
        """Examine ``budget`` entries from where the last sweep stopped, drop those expired at
        ``now`` and return how many were dropped.

        Moving on to the next shard takes a snapshot of its ids (a shard's worth at most, about
        0.1 ms) and counts as one entry, so that a sweep over empty shards ends too.
        """
        dropped = 0
        while budget > 0:
            if self._sweep_pos >= len(self._sweep_keys):
                self._sweep_shard = (self._sweep_shard + 1) & self._mask
                self._sweep_keys = self.shard_keys(self._sweep_shard)
                self._sweep_pos = 0
                budget -= 1
                continue
            stop = min(self._sweep_pos + budget, len(self._sweep_keys))
            dropped += self.expire(self._sweep_shard, self._sweep_keys, self._sweep_pos, stop, now)
            budget -= stop - self._sweep_pos
            self._sweep_pos = stop
        return dropped

    def shard_keys(self, index: int) -> list[str]:
        """Return a snapshot of the ids in shard ``index``."""
        # A copy of the dict's table, read in sequence (0.1 ms for a shard). An OrderedDict, the
        # obvious LRU container, iterates by looking every key up (1 ms) and takes 50 bytes more
        # per record: re-inserting into a plain dict moves a record to its end as well.
        return list(self._shards[index])

    def expire(self, index: int, keys: list[str], start: int, stop: int, now: float) -> int:
        """Drop those of ``keys[start:stop]`` (ids of shard ``index``, some perhaps gone or
        rewritten since the snapshot) whose entry has expired at ``now``; return how many.
        """
        shard = self._shards[index]
        dropped = 0
        for position in range(start, stop):
            key = keys[position]
            entry = shard.get(key)  # looked up now: what the snapshot saw may have changed
            if entry is not None and entry[1] is not None and entry[1] <= now:
                del shard[key]
                dropped += 1
        self._count -= dropped
        return dropped


class MemoryStore(SessionStore):
    """Keep session records in the memory of this process, at most ``max_sessions`` of them.

    Records are immutable bytes, so no two requests ever share a live object. Sessions are lost
    when the process ends and are not shared between worker processes.

    When a new session would make more than ``max_sessions`` records, the store drops expired
    records first, then the least recently used ones, a read or a write being a use. Expired
    records are those its sweep reaches: up to a few hundred per new session in a full store,
    resuming where the last sweep stopped, so that it examines every record in turn (the least
    recently used record is, besides, usually the first to expire: every use slides its expiry).
    Each call takes time independent of the number of records, amortised (finding the least
    recently used is logarithmic in the number of shards, at most 1,024), and none holds the event
    loop for more than a fraction of a millisecond, however many records there are.

    Args:
        max_sessions: The most records held at once, expired ones included until dropped. A small
            session takes about 400 bytes (a million: about 400 MB).
        clock: Seconds since the epoch, as for every store (:meth:`now` stamps the sessions with
            it); injectable so that tests can move time.

    Raises:
        ValueError: ``max_sessions`` is not a positive integer.
    """

    __slots__ = ("_clock", "_full_sweep", "_max_sessions", "_records")

    def __init__(self, max_sessions: int = 100_000, *, clock: Callable[[], float] = time.time) -> None:
        # bool is an int, but MemoryStore(True) is a mistake, not a store of one session.
        if isinstance(max_sessions, bool) or not isinstance(max_sessions, int) or max_sessions < 1:
            raise ValueError(
                "max_sessions must be a positive integer, the most sessions to keep in memory "
                f"(for example 100_000, the default); got {max_sessions!r}"
            )
        self._max_sessions = max_sessions
        self._clock = clock
        wanted = min(-(-max_sessions // _SHARD_SIZE), _MAX_SHARDS)
        self._records = _Records(1 << (wanted - 1).bit_length())
        self._full_sweep = _SWEEP_WHEN_FULL

    @property
    def max_sessions(self) -> int:
        """The most records the store holds at once."""
        return self._max_sessions

    def __len__(self) -> int:
        """Return how many records are held, expired ones included until they are dropped."""
        return len(self._records)

    async def get(self, session_id: str, expires_in: int | None) -> bytes | None:
        """Return the record stored under ``session_id``, or ``None`` if there is none or it has
        expired (then it is dropped). A read is a use; with ``expires_in`` it also resets the
        record's expiry to that many seconds from now.

        Never raises: there is no server to lose.
        """
        return self._records.read(session_id, self._clock(), expires_in)

    async def set(self, session_id: str, record: bytes, expires_in: int | None, previous: bytes | None) -> bool:
        """Store ``record`` under ``session_id`` if the stored record is still ``previous`` (an
        expired record counts as none), and return whether it was written.

        A new session in a full store first makes room: expired records go, then the least
        recently used. A write that loses the comparison changes nothing and drops nothing live.

        Never raises: there is no server to lose.
        """
        now = self._clock()
        records = self._records
        expires_at = None if expires_in is None else now + expires_in
        replaced = records.replace(session_id, record, expires_at, previous, now)
        if replaced is not None:
            return replaced
        if previous is not None:
            return False  # the record this request read is gone
        # Only a new session adds a record, so only it sweeps: a few records each collect
        # abandoned sessions as fast as they are made, with no pass over the whole store.
        records.sweep(now, _SWEEP_PER_NEW)
        if len(records) >= self._max_sessions:
            self._make_room(now)
        records.add(session_id, record, expires_at)
        return True

    def _make_room(self, now: float) -> None:
        # Expired records go first: a longer sweep, still bounded, looks for some before a live
        # record is dropped. Its length adapts (doubled when it finds some, halved when not), so
        # that a store full of live sessions spends little on looking.
        records = self._records
        if records.sweep(now, self._full_sweep):
            self._full_sweep = min(self._full_sweep * 2, _SWEEP_WHEN_FULL)
        else:
            self._full_sweep = max(self._full_sweep // 2, _SWEEP_WHEN_FULL_MIN)
        while len(records) >= self._max_sessions:
            records.drop_least_recently_used()

    async def delete(self, session_id: str) -> None:
        """Delete the record stored under ``session_id``, if any.

        Never raises: there is no server to lose.
        """
        self._records.discard(session_id)

    async def delete_expired(self) -> int:
        """Drop every expired record and return how many were dropped.

        Works in slices of ``_SLICE`` records and yields to the event loop between them, so that
        requests are served meanwhile. A record written during the pass may go unexamined: it
        has not expired yet.

        Never raises: there is no server to lose.
        """
        records = self._records
        dropped = examined = 0
        for index in range(records.shard_count):
            keys = records.shard_keys(index)
            examined += 1  # an empty shard costs a little too: enough of them make a slice
            start = 0
            while start < len(keys):
                if examined >= _SLICE:
                    examined = 0
                    await asyncio.sleep(0)
                stop = min(start + _SLICE - examined, len(keys))
                # The clock is read per slice: the pass lasts a while and records expire meanwhile.
                dropped += records.expire(index, keys, start, stop, self._clock())
                examined += stop - start
                start = stop
        return dropped
