"""Instructions per request of ``benchmarks.bench`` cases, counted by valgrind: a measure that repeats.

Run it with ``python -m benchmarks.instructions [CASE ...]`` (needs Debian's ``valgrind``). Each
case is run twice under ``valgrind --tool=callgrind``, with 100 and with 1,100 requests after the
same start-up (``PYTHONHASHSEED=0``); the difference over 1,000 is the case's instructions per
request, start-up and imports cancelled out. Unlike time on a shared machine, the count repeats
to within about 1k instructions, so it shows a change of a few thousand that timing noise hides.
Valgrind runs OpenSSL's SHA-256 and AES without their CPU instructions: crypto counts more here
than it costs. The driver is ``benchmarks.bench``'s, garbage collection on.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import sys

from benchmarks.bench import FLOOR, WITHOUT_LOGIN, Driver, litestar_cases

DEFAULT_CASES = (FLOOR, "reference: a bare-bones session", "ours MemoryStore read+write", "ours CookieStore read+write")


async def drive(case: str, requests: int) -> None:
    """Serve ``requests`` requests of ``case`` after a login and 50 of warm-up."""
    app = litestar_cases()[case]
    async with app.lifespan():
        driver = Driver(app)
        if not case.startswith(WITHOUT_LOGIN):
            await driver.log_in()
        for _ in range(50 + requests):
            await driver.request()


def counted(case: str, requests: int) -> int:
    """The instructions valgrind counts for a whole run of ``requests`` requests of ``case``."""
    command = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null"]
    command += [sys.executable, "-m", "benchmarks.instructions", "--drive", case, str(requests)]
    environment = {**os.environ, "PYTHONHASHSEED": "0"}  # the same dict layouts in both runs
    result = subprocess.run(command, capture_output=True, text=True, check=True, env=environment)  # noqa: S603 (our own command)
    match = re.search(r"Collected : (\d+)", result.stderr)
    if match is None:
        raise RuntimeError(f"valgrind printed no count for {case!r}:\n{result.stderr[-2000:]}")
    return int(match.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("cases", nargs="*", default=DEFAULT_CASES, help="benchmarks.bench case names")
    parser.add_argument("--drive", nargs=2, metavar=("CASE", "REQUESTS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.drive:  # the run valgrind watches
        asyncio.run(drive(args.drive[0], int(args.drive[1])))
        return
    for case in args.cases:
        per_request = (counted(case, 1100) - counted(case, 100)) / 1000
        print(f"{case:40} {per_request / 1000:8.1f}k instructions/request")


if __name__ == "__main__":
    main()
