"""Profile one in-process case with pyinstrument: where a request's microseconds go.

Run it with ``python -m benchmarks.profile [--case memory|cookie|bare] [--requests N] [--html PATH]``.
The case is the read+write handler of ``benchmarks.bench`` (or its bare handler), driven in-process
with a session cookie; pyinstrument samples every 100 us and prints the call tree, each frame with
its share of the time. Frames from Litestar, from this library and from the store are told apart
by their file, so the tree shows how much of a request each of them takes.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from litestar import Litestar
from pyinstrument import Profiler

from benchmarks.bench import SECRET, Driver, bare, ours_login, ours_read_write
from litestar_flash_sessions import SessionConfig, SessionPlugin
from litestar_flash_sessions.stores import CookieStore


def app_for(case: str) -> Litestar:
    if case == "bare":
        return Litestar([bare])
    config = SessionConfig(store=CookieStore(SECRET)) if case == "cookie" else SessionConfig()
    return Litestar([ours_read_write, ours_login], plugins=[SessionPlugin(config)])


async def profile(case: str, requests: int) -> Profiler:
    app = app_for(case)
    async with app.lifespan():
        driver = Driver(app)
        if case != "bare":
            await driver.log_in()
        await driver.time(1000)  # warm up
        profiler = Profiler(interval=0.0001, async_mode="disabled")
        profiler.start()
        await driver.time(requests)
        profiler.stop()
    return profiler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--case", choices=("memory", "cookie", "bare"), default="memory")
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--html", type=Path, help="also write pyinstrument's interactive HTML report here")
    args = parser.parse_args()
    profiler = asyncio.run(profile(args.case, args.requests))
    print(profiler.output_text(unicode=True, show_all=False, time="percent_of_total"))
    if args.html:
        args.html.write_text(profiler.output_html())


if __name__ == "__main__":
    main()
