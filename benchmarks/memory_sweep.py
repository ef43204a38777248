"""MemoryStore at a million records: the longest the event loop waits on one call, and bytes per
session.

Run it with ``python -m benchmarks.memory_sweep [--records N] [--rounds N] [--baseline REV]
[--json PATH]``. No server is needed. ``--baseline REV`` also measures the MemoryStore of git
revision ``REV`` (for example ``HEAD`` before the change is committed), loaded from ``git show``.

The store is filled with ``--records`` records (every tenth expires first) through its table,
then, each call timed on its own:

1. ``--rounds`` rounds of a new session, a read of a live session and a read of an expired one
   (the store is full: new sessions make room, expired records first);
2. ``delete_expired()``, each slice between two yields to the event loop timed;
3. ``--rounds`` new sessions into the store refilled with live sessions only (each drops the least
   recently used one; a store without a limit simply grows).

Calls are driven by hand, ``coroutine.send(None)`` per stretch, so that a figure is exactly one
synchronous stretch: what a request waiting in the event loop waits for. Each is timed twice, with
``time.perf_counter`` (wall) and ``time.thread_time`` (this thread's CPU): on a busy machine the
wall time also counts other processes running meanwhile, which would stall any code.
Garbage collection stays on.

Bytes per session: ``tracemalloc`` over 10,000 ``MemoryStore.set`` calls of a typical record
under keys as the plugin makes them (``store_key(new_session_id())``), as ``benchmarks.scale`` (b).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import secrets
import statistics
import subprocess
import time
import tracemalloc
import types
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import msgspec

from litestar_flash_sessions.commit import new_session_id, store_key
from litestar_flash_sessions.stores import MemoryStore

_encode = msgspec.msgpack.Encoder().encode
TTL = 3600


def typical_record(i: int) -> bytes:
    """A small session as MessagePack (an email, a user id and a CSRF token), as ``benchmarks.scale``."""
    return _encode([{"email": f"user{i}@example.com", "user_id": i, "csrf": secrets.token_hex(16)}, {}])


class FakeClock:
    """Time that moves only when told (so that records expire when the benchmark says)."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def baseline_store(revision: str) -> Callable[..., Any]:
    """The ``MemoryStore`` class of git revision ``revision``."""
    source = subprocess.run(  # noqa: S603 (the benchmark's own command line)
        ["git", "show", f"{revision}:litestar_flash_sessions/stores/memory.py"],  # noqa: S607
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    module = types.ModuleType(f"memory_at_{revision}")
    exec(compile(source, module.__name__, "exec"), module.__dict__)  # noqa: S102
    return module.MemoryStore  # type: ignore[no-any-return]


class Stretches:
    """The wall and CPU seconds of every synchronous stretch, by name."""

    def __init__(self) -> None:
        self.wall: dict[str, list[float]] = {}
        self.cpu: dict[str, list[float]] = {}

    def run(self, name: str, coroutine: Coroutine[Any, Any, Any]) -> Any:
        while True:
            wall, cpu = time.perf_counter(), time.thread_time()
            try:
                coroutine.send(None)
            except StopIteration as stop:
                self._add(name, time.perf_counter() - wall, time.thread_time() - cpu)
                return stop.value
            self._add(name, time.perf_counter() - wall, time.thread_time() - cpu)

    def _add(self, name: str, wall: float, cpu: float) -> None:
        self.wall.setdefault(name, []).append(wall)
        self.cpu.setdefault(name, []).append(cpu)

    def summary(self) -> dict[str, dict[str, float]]:
        def ms(values: list[float], q: float) -> float:
            return round(sorted(values)[min(len(values) - 1, int(q * len(values)))] * 1000, 3)

        return {
            name: {
                "count": len(wall),
                "wall_p50_ms": ms(wall, 0.5),
                "wall_p99_ms": ms(wall, 0.99),
                "wall_max_ms": round(max(wall) * 1000, 3),
                "cpu_max_ms": round(max(self.cpu[name]) * 1000, 3),
                "mean_us": round(statistics.fmean(wall) * 1e6, 2),
            }
            for name, wall in self.wall.items()
        }


def sid(index: int) -> str:
    return f"{index:043d}"


def stalls(make: Callable[..., Any], records: int, rounds: int) -> dict[str, Any]:
    clock = FakeClock()
    try:
        store = make(records, clock=clock)
    except TypeError:  # a store without a limit
        store = make(clock=clock)
    record = typical_record(1)
    started = time.perf_counter()
    table = store._records  # (record, expires_at) per key, in either design
    for index in range(records):
        table[sid(index)] = (record, clock.now + (60 if index % 10 == 0 else TTL))
    fill_s = time.perf_counter() - started
    clock.now += 120
    gc.collect()
    timed = Stretches()
    for index in range(rounds):
        timed.run("1. set, new session", store.set(sid(records + index), record, TTL, None))
        timed.run("1. get, live", store.get(sid(10 * index + 1), TTL))
        timed.run("1. get, expired", store.get(sid(10 * index), TTL))
    dropped = timed.run("2. delete_expired, one stretch", store.delete_expired())
    for index in range(records - len(store)):
        table[sid(2 * records + index)] = (record, clock.now + TTL)
    gc.collect()
    for index in range(rounds):
        timed.run("3. set, new session, store of live ones", store.set(sid(3 * records + index), record, TTL, None))
    return {"fill_s": round(fill_s, 2), "delete_expired_dropped": dropped, "held": len(store), **timed.summary()}


def bytes_per_session(make: Callable[..., Any], count: int) -> float:
    """Bytes allocated per session kept, its key and record included (as ``benchmarks.scale`` (b))."""
    store = make()
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(count):
            with contextlib.suppress(StopIteration):  # a memory store call ends at its first send
                store.set(store_key(new_session_id()), typical_record(i), TTL, None).send(None)
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert len(store) == count
    return round((after - before) / count, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=20_000)
    parser.add_argument("--baseline", metavar="REV", help="also measure the MemoryStore of this git revision")
    parser.add_argument("--json", type=Path, help="also write the results to this JSON file")
    args = parser.parse_args()
    stores: dict[str, Callable[..., Any]] = {"MemoryStore (this tree)": MemoryStore}
    if args.baseline:
        stores[f"MemoryStore ({args.baseline})"] = baseline_store(args.baseline)
    data: dict[str, Any] = {"records": args.records, "rounds": args.rounds, "stores": {}}
    for name, make in stores.items():
        print(f"{name}: {args.records:,} records ...", flush=True)
        result = stalls(make, args.records, args.rounds)
        result["bytes_per_session"] = bytes_per_session(make, 10_000)
        data["stores"][name] = result
        print(f"  filled in {result['fill_s']} s; delete_expired dropped {result['delete_expired_dropped']:,}")
        print(f"  {'call':42} {'count':>7} {'mean us':>8} {'p50 ms':>7} {'p99 ms':>7} {'max ms':>8} {'max CPU ms':>10}")
        for call, s in result.items():
            if isinstance(s, dict):
                print(
                    f"  {call:42} {s['count']:7} {s['mean_us']:8.1f} {s['wall_p50_ms']:7.3f} {s['wall_p99_ms']:7.3f}"
                    f" {s['wall_max_ms']:8.2f} {s['cpu_max_ms']:10.2f}"
                )
        size = len(typical_record(1))
        print(f"  bytes per session (10,000 sessions, {size}-byte records): {result['bytes_per_session']}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(data, indent=2) + "\n")


if __name__ == "__main__":
    main()
