"""The memory store's limit (``max_sessions``: expired records first, then the least recently
used) and its promise never to hold the event loop long, however many records it holds.

The store's calls never wait on anything (``delete_expired`` only on ``asyncio.sleep(0)``), so
the tests drive their coroutines by hand: each ``send`` runs one synchronous stretch, which is
what a request waiting in the event loop would wait for, and the tests count the records each
stretch touches (a count does not vary with the machine's load, as a time does).
"""

from __future__ import annotations

import heapq
import random
import time
from collections.abc import Callable, Coroutine
from types import SimpleNamespace
from typing import Any, TypeVar

import pytest

from litestar_flash_sessions.stores import MemoryStore, memory
from tests.harness import FakeClock

T = TypeVar("T")


def stretches(coroutine: Coroutine[Any, Any, T]) -> tuple[T, int]:
    """Run ``coroutine`` to the end; return its result and the number of stretches it ran in
    (one more than its yields to the event loop)."""
    count = 1
    while True:
        try:
            yielded = coroutine.send(None)
        except StopIteration as stop:
            return stop.value, count
        count += 1
        assert yielded is None, "the store waited on something other than asyncio.sleep(0)"


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a store call that must complete without yielding once."""
    result, count = stretches(coroutine)
    assert count == 1, "a memory store call yielded to the event loop"
    return result


def sid(index: int) -> str:
    """A well-formed session id (43 characters), distinct per index."""
    return f"{index:043d}"


# --- configuration ------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [0, -1, 1.5, "100", None, True])
def test_max_sessions_must_be_a_positive_integer(bad: Any) -> None:
    with pytest.raises(ValueError, match=r"max_sessions must be a positive integer.*got"):
        MemoryStore(bad)


def test_defaults_to_100_000_sessions_on_the_wall_clock() -> None:
    store = MemoryStore()
    assert store.max_sessions == 100_000
    assert abs(store.now() - time.time()) < 60, "sessions are stamped in seconds since the epoch, like every store's"


# --- the limit ----------------------------------------------------------------------------------


def test_a_full_store_drops_expired_records_first() -> None:
    clock = FakeClock()
    store = MemoryStore(3, clock=clock)
    assert run(store.set("old", b"1", 100, None))
    assert run(store.set("short", b"2", 10, None))  # younger, but expires first
    assert run(store.set("never", b"3", None, None))
    clock.advance(11)
    assert run(store.set("new", b"4", 100, None))
    assert len(store) == 3
    assert run(store.get("short", None)) is None
    assert [run(store.get(key, None)) for key in ("old", "never", "new")] == [b"1", b"3", b"4"], (
        "the expired record went, not the least recently used live one"
    )


def test_then_the_least_recently_used_a_read_or_a_write_being_a_use() -> None:
    store = MemoryStore(3, clock=FakeClock())
    for key in "abc":
        assert run(store.set(key, key.encode(), None, None))
    assert run(store.get("a", None)) == b"a"  # a read is a use: the order is now b, c, a
    assert run(store.set("d", b"d", None, None))
    assert run(store.get("b", None)) is None, "the least recently used record went"
    assert run(store.set("c", b"c2", None, b"c"))  # a write is a use: a, d, c
    assert run(store.set("e", b"e", None, None))
    assert len(store) == 3
    assert run(store.get("a", None)) is None
    assert [run(store.get(key, None)) for key in "dce"] == [b"d", b"c2", b"e"]


def test_the_least_recently_used_is_exact_across_shards() -> None:
    """A store of 10,000 spreads its records over several shards; the order of use is still the
    store's, not each shard's."""
    store = MemoryStore(10_000, clock=FakeClock())
    assert store._records.shard_count > 1
    for index in range(10_000):
        assert run(store.set(sid(index), b"x", 3600, None))
    for index in range(0, 10_000, 3):  # read every third record: those become the most recent
        assert run(store.get(sid(index), 3600)) == b"x"
    unread = [index for index in range(10_000) if index % 3]
    for index in range(10_000, 13_000):
        assert run(store.set(sid(index), b"y", 3600, None))
        assert len(store) == 10_000
    dropped = set(unread[:3000])
    for index in range(13_000):
        assert (run(store.get(sid(index), None)) is None) == (index in dropped), index


def test_rewriting_a_record_of_a_full_store_drops_nothing() -> None:
    store = MemoryStore(2, clock=FakeClock())
    assert run(store.set("a", b"1", None, None))
    assert run(store.set("b", b"2", None, None))
    assert run(store.set("a", b"3", None, b"1"))
    assert len(store) == 2
    assert run(store.get("b", None)) == b"2"


def test_a_lost_compare_and_set_neither_writes_nor_drops() -> None:
    store = MemoryStore(2, clock=FakeClock())
    assert run(store.set("a", b"1", None, None))
    assert run(store.set("b", b"2", None, None))
    assert not run(store.set("c", b"3", None, b"something"))  # c holds nothing
    assert not run(store.set("a", b"3", None, None))  # a holds something
    assert not run(store.set("a", b"3", None, b"2"))  # a holds something else
    assert len(store) == 2
    assert [run(store.get(key, None)) for key in "abc"] == [b"1", b"2", None]


def test_an_expired_record_counts_as_none_for_compare_and_set() -> None:
    clock = FakeClock()
    store = MemoryStore(clock=clock)
    assert run(store.set("a", b"1", 10, None))
    clock.advance(10)  # expired at exactly its expiry
    assert not run(store.set("a", b"2", 10, b"1")), "the record read is gone"
    assert run(store.get("a", 10)) is None, "never returned, nor revived by a sliding read"
    assert run(store.set("a", b"3", 10, None))
    assert run(store.get("a", None)) == b"3"
    assert len(store) == 1


def test_never_more_than_max_sessions_under_a_random_workload() -> None:
    """Random reads, writes, compare-and-set conflicts, deletes and expiries: the store never
    holds more than its limit, and never returns a record that is not the last one written or
    that has expired."""
    clock = FakeClock()
    store = MemoryStore(3000, clock=clock)  # two shards
    rng = random.Random(1234)
    written: dict[str, tuple[bytes, float | None]] = {}  # the last value written, and its expiry
    for step in range(40_000):
        key = sid(rng.randrange(6000))
        action = rng.random()
        if action < 0.4:
            ttl = rng.choice([None, 5, 50, 500])
            current = run(store.get(key, None))
            record = str(step).encode()
            previous = current if rng.random() < 0.9 else b"stale"
            if run(store.set(key, record, ttl, previous)):
                written[key] = (record, None if ttl is None else clock() + ttl)
            else:
                assert previous == b"stale"
                assert current != previous
        elif action < 0.8:
            slide = rng.choice([None, 50])
            got = run(store.get(key, slide))
            if got is not None:
                record, expires_at = written[key]
                assert got == record
                assert expires_at is None or expires_at > clock(), "an expired record was returned"
                if slide is not None:
                    written[key] = (record, clock() + slide)
        elif action < 0.9:
            run(store.delete(key))
            written.pop(key, None)
        else:
            clock.advance(rng.choice([1, 10, 100]))
        assert len(store) <= 3000


# --- expiry ---------------------------------------------------------------------------------------


def test_delete_expired_drops_exactly_the_expired_records_in_slices() -> None:
    clock = FakeClock()
    store = MemoryStore(clock=clock)
    for index in range(5000):
        assert run(store.set(sid(index), b"x", 10 if index % 2 else None, None))
    clock.advance(11)
    dropped, count = stretches(store.delete_expired())
    assert dropped == 2500
    assert len(store) == 2500
    assert count >= 5000 // 256, "it yields to the event loop between slices"
    assert all(run(store.get(sid(index), None)) == b"x" for index in range(0, 5000, 2))


def test_delete_expired_while_the_store_changes() -> None:
    """Between two slices of the pass, requests read, rewrite, delete and add records, some of
    them in the part of the store the pass has yet to examine."""
    clock = FakeClock()
    store = MemoryStore(clock=clock)
    for index in range(20_000):
        assert run(store.set(sid(index), b"old", 10, None))
    clock.advance(11)  # all of them expired
    for index in range(0, 20_000, 4):  # a quarter written again, alive: they must survive
        assert run(store.set(sid(index), b"new", 100, None))
    coroutine = store.delete_expired()
    rng = random.Random(5)
    deleted: set[int] = set()
    added = 0
    while True:
        try:
            assert coroutine.send(None) is None
        except StopIteration as stop:
            dropped = stop.value
            break
        index = rng.randrange(20_000)
        if index % 4 == 0:
            run(store.delete(sid(index)))
            deleted.add(index)
        run(store.get(sid(rng.randrange(20_000)), None))  # maybe drops an expired one itself
        assert run(store.set(sid(100_000 + added), b"added", 100, None))
        added += 1
    survivors = {index for index in range(0, 20_000, 4)} - deleted
    assert len(store) == len(survivors) + added
    assert dropped <= 15_000
    assert all(run(store.get(sid(index), None)) == b"new" for index in survivors)


class Work:
    """Counts the work a memory store does, in records touched: each record its sweeps and
    ``delete_expired`` examine, each id a snapshot of a shard copies, each heap operation."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.units = 0
        expire, shard_keys = memory._Records.expire, memory._Records.shard_keys

        def counted_expire(records: Any, index: int, keys: list[str], start: int, stop: int, now: float) -> int:
            self.units += stop - start
            return expire(records, index, keys, start, stop, now)

        def counted_shard_keys(records: Any, index: int) -> list[str]:
            keys = shard_keys(records, index)
            self.units += len(keys)
            return keys

        def counted(operation: Callable[..., Any]) -> Callable[..., Any]:
            def call(*args: Any) -> Any:
                self.units += 1
                return operation(*args)

            return call

        monkeypatch.setattr(memory._Records, "expire", counted_expire)
        monkeypatch.setattr(memory._Records, "shard_keys", counted_shard_keys)
        heap = {name: counted(getattr(heapq, name)) for name in ("heappush", "heappop", "heapreplace")}
        monkeypatch.setattr(memory, "heapq", SimpleNamespace(**heap))

    def per_stretch(self, coroutine: Coroutine[Any, Any, T]) -> tuple[T, list[int]]:
        """Run ``coroutine`` to the end; return its result and the work of each stretch between
        two yields to the event loop."""
        counts: list[int] = []
        while True:
            before = self.units
            try:
                yielded = coroutine.send(None)
            except StopIteration as stop:
                counts.append(self.units - before)
                return stop.value, counts
            counts.append(self.units - before)
            assert yielded is None, "the store waited on something other than asyncio.sleep(0)"


def test_a_full_store_of_a_million_records_does_bounded_work_per_call(monkeypatch: pytest.MonkeyPatch) -> None:
    """A full store of a million records, a tenth of them expired: no call, nor any slice of
    ``delete_expired``, touches more than a few shards' worth of records, and no shard (a dict,
    whose table is copied whole when it grows) holds more than twice ``_SHARD_SIZE``. Counted in
    records touched, not timed: the store this replaced swept every record in one go every 1,024
    writes, and one dict of a million records stalls whenever it grows."""
    clock = FakeClock()
    count = 1_000_000
    store = MemoryStore(count, clock=clock)
    record = b"r" * 84
    # Filled through the store's table (a fraction of the time a million calls take), with the
    # (record, expiry) pairs a write stores: every tenth record expires first.
    records = store._records
    now = clock()
    for index in range(count):
        records[sid(index)] = (record, now + (60 if index % 10 == 0 else 3600))
    assert len(store) == count
    clock.advance(120)
    work = Work(monkeypatch)
    bound = 3 * max(len(shard) for shard in records._shards) + 256  # a few snapshots, a full store's sweep
    work_of: dict[str, list[int]] = {}

    def counted(name: str, coroutine: Coroutine[Any, Any, T]) -> T:
        result, counts = work.per_stretch(coroutine)
        assert len(counts) == 1, "a memory store call yielded to the event loop"
        work_of.setdefault(name, []).extend(counts)
        return result

    # Full: new sessions make room, expired records first (found by the bounded sweep).
    for index in range(20_000):
        assert counted("set (new, full, expired first)", store.set(sid(count + index), b"n", 3600, None))
        assert counted("get", store.get(sid(10 * index + 1), 3600)) == record
        assert counted("get (expired)", store.get(sid(10 * index), 3600)) is None
        assert len(store) <= count
    dropped, counts = work.per_stretch(store.delete_expired())
    work_of["delete_expired (one slice)"] = counts
    assert len(counts) > 1000, "delete_expired yields to the event loop between slices"
    assert dropped > 0
    assert len(store) == count - count // 10 + 20_000, "exactly the expired records went, no live one"
    # Full of live sessions: every new session drops the least recently used one.
    for index in range(count // 10 - 20_000):
        records[sid(2 * count + index)] = (record, clock() + 3600)
    assert len(store) == count
    for index in range(20_000):
        assert counted("set (new, full, least recently used)", store.set(sid(3 * count + index), b"n", 3600, None))
        assert len(store) == count
    assert run(store.get(sid(2), None)) is None, "the least recently used went"
    assert run(store.get(sid(1), None)) == record, "a record read since survived"
    largest = max(len(shard) for shard in records._shards)
    assert largest <= 4096, f"a shard of {largest} records: its table is copied whole when it grows"
    most = {name: max(counts) for name, counts in work_of.items()}
    print(f"most records touched in one stretch, with 1,000,000 records: {most} (bound {bound})")
    assert all(units <= bound for units in most.values()), f"most records touched in one stretch: {most}; bound {bound}"
