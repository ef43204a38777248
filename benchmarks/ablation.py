"""Where the microseconds of a session handler go: the same handler, built up one layer at a time.

Run it with ``python -m benchmarks.ablation [--rounds N] [--requests N]``. Each case adds one
thing to the one before, all measured in one run with the cases interleaved (as in
``benchmarks.bench``), so the differences show what each layer costs:

1. bare Litestar: a handler returning a string;
2. + a zero-argument dependency: Litestar's dependency injection, which any handler with a
   dependency pays;
3. + a pass-through middleware on the handler: Litestar then also wraps the handler in its
   exception middleware;
4. our plugin on a store that answers at once (a fixed record, writes dropped): our middleware,
   dependency, cookie parsing, decoding, the handler's ``get``/``set`` calls and the commit;
5. our plugin on MemoryStore, then 6. on CookieStore: the real load and commit.

A step is the median over the rounds of the difference between a case and the one above it,
both measured in the same round.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from litestar import Litestar, get
from litestar.di import NamedDependency, Provide

from benchmarks.bench import SECRET, bare, difference, floor, measure, median, one, ours_login, ours_read_write
from litestar_flash_sessions import SessionConfig, SessionPlugin
from litestar_flash_sessions.record import Live, encode
from litestar_flash_sessions.stores import CookieStore, SessionStore


@get("/", dependencies={"value": Provide(one)})
async def with_dependency(value: NamedDependency[int]) -> str:
    return "ok"


class NullStore(SessionStore):
    """A store that answers at once: every id holds the same record, writes are dropped."""

    record = encode(Live({"visits": 1, "user": "ann"}, []))

    async def get(self, session_id: str, expires_in: int | None) -> bytes | None:
        return self.record

    async def set(self, session_id: str, record: bytes, expires_in: int | None, previous: bytes | None) -> bool:
        return True

    async def delete(self, session_id: str) -> None:
        return None


def cases() -> dict[str, Any]:
    return {
        "bare litestar": Litestar([bare]),
        "+ a zero-argument dependency": Litestar([with_dependency]),
        "+ a pass-through middleware (the floor)": Litestar([floor]),
        "ours, a store that does nothing": Litestar(
            [ours_read_write, ours_login], plugins=[SessionPlugin(SessionConfig(store=NullStore()))]
        ),
        "ours, MemoryStore": Litestar([ours_read_write, ours_login], plugins=[SessionPlugin()]),
        "ours, CookieStore": Litestar(
            [ours_read_write, ours_login], plugins=[SessionPlugin(SessionConfig(store=CookieStore(SECRET)))]
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--requests", type=int, default=500)
    args = parser.parse_args()
    samples = asyncio.run(measure(cases(), args.rounds, args.requests, without_session=("bare", "+")))
    previous = None
    print(f"{'case':32} {'us/request':>11} {'step':>7}")
    for name in samples:
        step = "" if previous is None else f"{difference(samples, name, previous):+7.1f}"
        print(f"{name:32} {median(samples, name):11.1f} {step:>7}")
        previous = name
    print("(us/request: median over the rounds; step: median of the per-round differences to the case above)")


if __name__ == "__main__":
    main()
