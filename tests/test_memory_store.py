"""What is specific to the memory store: eviction and isolation."""

from __future__ import annotations

from litestar_flash_sessions.stores import MemoryStore
from tests.harness import FakeClock


async def test_expired_records_are_evicted() -> None:
    clock = FakeClock()
    store = MemoryStore(clock=clock)
    assert await store.set("a", b"1", 10, None)
    assert await store.set("b", b"2", None, None)
    assert await store.set("c", b"3", 100, None)
    clock.advance(11)
    assert await store.get("a", None) is None
    assert len(store) == 2, "reading an expired record evicts it"
    clock.advance(100)
    assert await store.delete_expired() == 1
    assert len(store) == 1
    assert await store.get("b", None) == b"2"


async def test_sweep_runs_during_writes() -> None:
    clock = FakeClock()
    store = MemoryStore(clock=clock)
    for index in range(1000):
        assert await store.set(f"old{index}", b"x", 1, None)
    clock.advance(2)
    for index in range(100):
        assert await store.set(f"new{index}", b"x", 1, None)
    assert len(store) < 1000, "abandoned sessions do not pile up"
