"""In-process benchmark: microseconds per request, driven over ASGI with no sockets.

Run it with ``scripts/nox -s bench`` or ``python -m benchmarks.bench [--rounds N] [--requests N] [--json PATH]``.
Every case runs once per round, the cases interleaved (each round starts one case further on, so
that no case always runs first), so that drift of the machine hits all alike. A case's figure is
the median over the rounds of its mean time per request in a round. A ratio or difference of two
cases is taken within each round, between runs a few milliseconds apart, and its median over the
rounds is reported: on a shared virtual machine whose speed wanders by tens of percent from one
second to the next, that cancels the wandering that a ratio of two medians would keep.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from litestar import Litestar, Request, get
from litestar.di import NamedDependency, Provide
from litestar.middleware.session.client_side import CookieBackendConfig
from litestar.middleware.session.server_side import ServerSideSessionConfig
from litestar.stores.memory import MemoryStore as LitestarMemoryStore
from litestar.types import ASGIApp as LitestarASGIApp
from litestar.types import Receive, Scope, Send

from benchmarks.minimal import bare_session_app
from litestar_flash_sessions import Session, SessionConfig, SessionPlugin
from litestar_flash_sessions.stores import CookieStore

ASGIApp = Callable[[dict[str, Any], Any, Any], Awaitable[None]]
SECRET = "benchmark-secret-0123456789abcdef"


@get("/")
async def bare() -> str:
    return "ok"


async def one() -> int:
    return 1


class PassThrough:
    """A middleware that only calls the next app: what Litestar charges for a route with one."""

    def __init__(self, app: LitestarASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)


@get("/", dependencies={"value": Provide(one)}, middleware=[PassThrough])
async def floor(value: NamedDependency[int]) -> str:
    """The least Litestar charges for an injected value and a post-processed response: the
    plugin's handlers have both (the ``session`` dependency, the middleware that commits)."""
    return "ok"


@get("/")
async def ours_read_write(session: Session) -> str:
    session.set("visits", (session.get("visits") or 0) + 1)
    session.set("user", "ann")
    return "ok"


@get("/")
async def builtin_read_write(request: Request[Any, Any, Any]) -> str:
    request.session["visits"] = request.session.get("visits", 0) + 1
    request.session["user"] = "ann"
    return "ok"


@get("/login")
async def ours_login(session: Session) -> str:
    session.set("user", "ann")
    return "ok"


@get("/login")
async def builtin_login(request: Request[Any, Any, Any]) -> str:
    request.set_session({"user": "ann"})
    return "ok"


BARE_SESSION = "reference: a bare-bones session"
"""A hand-written session with none of the guarantees (``benchmarks.minimal``): the least a
server-side session costs over the floor on the machine at hand."""


def litestar_cases() -> dict[str, Litestar]:
    return {
        "bare litestar": Litestar([bare]),
        "floor: a dependency + a middleware": Litestar([floor]),
        "ours, handler without session": Litestar([bare, ours_login], plugins=[SessionPlugin()]),
        "ours MemoryStore read+write": Litestar([ours_read_write, ours_login], plugins=[SessionPlugin()]),
        "ours CookieStore read+write": Litestar(
            [ours_read_write, ours_login], plugins=[SessionPlugin(SessionConfig(store=CookieStore(SECRET)))]
        ),
        BARE_SESSION: bare_session_app(),
        "litestar ServerSideSessionConfig": Litestar(
            [builtin_read_write, builtin_login],
            middleware=[ServerSideSessionConfig().middleware],
            stores={"sessions": LitestarMemoryStore()},
        ),
        "litestar CookieBackendConfig": Litestar(
            [builtin_read_write, builtin_login],
            middleware=[CookieBackendConfig(secret=SECRET.encode()[:32]).middleware],
        ),
    }


def starlette_cases() -> dict[str, Any]:
    """Bare Starlette and starsessions, when installed (``pip install starsessions``)."""
    try:
        from starlette.applications import Starlette
        from starlette.middleware import Middleware
        from starlette.requests import Request as StarletteRequest
        from starlette.responses import PlainTextResponse
        from starlette.routing import Route
        from starsessions import CookieStore as StarCookieStore
        from starsessions import InMemoryStore, SessionAutoloadMiddleware
        from starsessions import SessionMiddleware as StarSessionMiddleware
    except ImportError:
        return {}

    async def plain(request: StarletteRequest) -> PlainTextResponse:
        return PlainTextResponse("ok")

    async def read_write(request: StarletteRequest) -> PlainTextResponse:
        request.session["visits"] = request.session.get("visits", 0) + 1
        request.session["user"] = "ann"
        return PlainTextResponse("ok")

    async def login(request: StarletteRequest) -> PlainTextResponse:
        request.session["user"] = "ann"
        return PlainTextResponse("ok")

    def with_sessions(store: Any) -> Starlette:
        middleware = [
            Middleware(StarSessionMiddleware, store=store, cookie_https_only=False),  # type: ignore[arg-type]
            Middleware(SessionAutoloadMiddleware),  # type: ignore[arg-type]
        ]
        return Starlette(routes=[Route("/", read_write), Route("/login", login)], middleware=middleware)

    return {
        "bare starlette": Starlette(routes=[Route("/", plain)]),
        "starsessions memory read+write": with_sessions(InMemoryStore()),
        "starsessions cookie read+write": with_sessions(StarCookieStore(SECRET)),
    }


@dataclass
class Driver:
    """Calls an ASGI app in-process with a fixed request, sending back the cookies it sets, as a
    browser does (a cookie store's cookie changes with every write)."""

    app: ASGIApp
    cookies: dict[bytes, bytes] = field(default_factory=dict)
    cookie: bytes = b""
    """The ``Cookie`` header the next request sends."""

    def scope(self, path: str) -> dict[str, Any]:
        headers = [(b"host", b"bench"), (b"cookie", self.cookie)] if self.cookie else [(b"host", b"bench")]
        return {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "root_path": "",
            "query_string": b"",
            "headers": headers,
            "client": ("127.0.0.1", 1234),
            "server": ("bench", 80),
            "state": {},
        }

    async def call(self, path: str = "/") -> list[tuple[bytes, bytes]]:
        """Send one request; return the response's headers."""
        response_headers: list[tuple[bytes, bytes]] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                if message["status"] >= 400:
                    raise RuntimeError(f"{path}: status {message['status']}")
                response_headers.extend(message["headers"])

        await self.app(self.scope(path), receive, send)
        return response_headers

    async def request(self, path: str = "/") -> list[tuple[bytes, bytes]]:
        """Send one request and keep the cookies it sets; return the response's headers."""
        headers = await self.call(path)
        self.keep_cookies(headers)
        return headers

    def keep_cookies(self, headers: list[tuple[bytes, bytes]]) -> None:
        """Store or drop the cookies of the ``Set-Cookie`` headers, as a browser does."""
        changed = False
        for name, value in headers:
            if name == b"set-cookie":
                pair, _, attributes = value.partition(b";")
                cookie, _, cookie_value = pair.strip().partition(b"=")
                if b"max-age=0" in attributes.lower().replace(b" ", b"") or not cookie_value:
                    self.cookies.pop(cookie, None)
                else:
                    self.cookies[cookie] = cookie_value
                changed = True
        if changed:
            self.cookie = b"; ".join(b"%s=%s" % item for item in self.cookies.items())

    async def log_in(self) -> None:
        """Get a session cookie, as a returning visitor has one."""
        await self.request("/login")

    async def time(self, requests: int) -> float:
        """Mean microseconds per request over ``requests`` requests: the app's time only, not the
        driver's own work of keeping the cookies between requests."""
        spent = 0
        clock = time.perf_counter_ns
        for _ in range(requests):
            start = clock()
            headers = await self.call()
            spent += clock() - start
            self.keep_cookies(headers)
        return spent / requests / 1000


def lifespan(app: Any) -> contextlib.AbstractAsyncContextManager[Any]:
    return app.lifespan() if isinstance(app, Litestar) else app.router.lifespan_context(app)


Samples = dict[str, list[float]]
"""Microseconds per request of each case, one figure per round."""


def median(samples: Samples, case: str) -> float:
    """The case's median microseconds per request over the rounds."""
    return statistics.median(samples[case])


def ratio(samples: Samples, case: str, base: str) -> float:
    """How many times slower ``case`` is than ``base``: the median of the per-round ratios."""
    return statistics.median(a / b for a, b in zip(samples[case], samples[base], strict=True))


def difference(samples: Samples, case: str, base: str) -> float:
    """Microseconds ``case`` takes over ``base``: the median of the per-round differences."""
    return statistics.median(a - b for a, b in zip(samples[case], samples[base], strict=True))


WITHOUT_LOGIN = ("bare", "floor")
"""The cases (by the start of their names) driven without logging in first."""


async def measure(
    apps: dict[str, Any], rounds: int, requests: int, without_session: tuple[str, ...] = WITHOUT_LOGIN
) -> Samples:
    """Microseconds per request of each app in each round; apps whose name starts with one of
    ``without_session`` are driven without logging in first."""
    async with contextlib.AsyncExitStack() as stack:
        for app in apps.values():
            await stack.enter_async_context(lifespan(app))
        return await measure_started(apps, rounds, requests, without_session)


async def measure_started(
    apps: dict[str, Any], rounds: int, requests: int, without_session: tuple[str, ...]
) -> Samples:
    drivers = {}
    for name, app in apps.items():
        driver = Driver(app)
        if not name.startswith(without_session):
            await driver.log_in()
        await driver.time(max(requests // 10, 10))  # warm up
        drivers[name] = driver
    samples: Samples = {name: [] for name in drivers}
    order = list(drivers)
    # Garbage collection stays on, as in a real server: its passes are part of what a request
    # costs, and more so for code that allocates more per request.
    for round_number in range(rounds):
        shift = round_number % len(order)
        for name in order[shift:] + order[:shift]:
            samples[name].append(await drivers[name].time(requests))
    return samples


BASE = "bare litestar"
FLOOR = "floor: a dependency + a middleware"
COMPARISONS = (
    ("ours MemoryStore read+write", "litestar ServerSideSessionConfig"),
    ("ours CookieStore read+write", "litestar CookieBackendConfig"),
)
OVERHEADS = (("memory", "ours MemoryStore read+write"), ("cookie", "ours CookieStore read+write"))
WITHOUT_SESSION = "ours, handler without session"

# Issue 12's targets: (what, figure, the limit, whether the figure must be at most the limit).
TARGETS = (
    ("MemoryStore read+write over the floor (us)", ("over_floor_us", "memory"), 5.0, True),
    ("CookieStore read+write over the floor (us)", ("over_floor_us", "cookie"), 9.0, True),
    ("x faster than ServerSideSessionConfig", ("times_faster", " vs ".join(COMPARISONS[0])), 3.0, False),
    ("x faster than CookieBackendConfig", ("times_faster", " vs ".join(COMPARISONS[1])), 2.1, False),
    ("memory overhead / starsessions' overhead", ("overhead_ratio", "memory"), 0.7, True),
    ("cookie overhead / starsessions' overhead", ("overhead_ratio", "cookie"), 0.7, True),
    ("handler without session x bare litestar", ("x_bare_litestar", WITHOUT_SESSION), 1.02, True),
)


def summary(samples: Samples) -> dict[str, Any]:
    """Every figure the report prints: medians, ratios to bare Litestar, speed-ups, overheads."""
    result: dict[str, Any] = {
        "us_per_request": {name: median(samples, name) for name in samples},
        "x_bare_litestar": {name: ratio(samples, name, BASE) for name in samples},
        "times_faster": {f"{ours} vs {theirs}": ratio(samples, theirs, ours) for ours, theirs in COMPARISONS},
    }
    if FLOOR in samples:
        result["over_floor_us"] = {kind: difference(samples, ours, FLOOR) for kind, ours in OVERHEADS}
        if BARE_SESSION in samples:
            result["over_floor_us"]["bare-bones session"] = difference(samples, BARE_SESSION, FLOOR)
    if "bare starlette" in samples:
        result["overhead_us"] = {
            kind: {
                "ours over bare litestar": difference(samples, ours, BASE),
                "starsessions over bare starlette": difference(
                    samples, f"starsessions {kind} read+write", "bare starlette"
                ),
            }
            for kind, ours in OVERHEADS
        }
        # Per round: our overhead over bare Litestar over starsessions' over bare Starlette.
        result["overhead_ratio"] = {
            kind: statistics.median(
                (o - b) / (s - sb)
                for o, b, s, sb in zip(
                    samples[ours],
                    samples[BASE],
                    samples[f"starsessions {kind} read+write"],
                    samples["bare starlette"],
                    strict=True,
                )
            )
            for kind, ours in OVERHEADS
        }
    return result


def report(figures: dict[str, Any]) -> None:
    micros, ratios = figures["us_per_request"], figures["x_bare_litestar"]
    print(f"{'case':40} {'us/request':>11} {'x bare litestar':>16}")
    for name in micros:
        print(f"{name:40} {micros[name]:11.1f} {ratios[name]:16.2f}")
    print()
    for kind, overhead in figures.get("overhead_us", {}).items():
        print(
            f"{kind} overhead: ours {overhead['ours over bare litestar']:5.1f} us over bare litestar, "
            f"starsessions {overhead['starsessions over bare starlette']:5.1f} us over bare starlette"
        )
    for kind, over in figures.get("over_floor_us", {}).items():
        who = kind if kind == "bare-bones session" else f"{kind}: ours"
        print(f"{who} {over:5.1f} us over the floor (a dependency + a middleware)")
    for comparison, times in figures["times_faster"].items():
        ours, theirs = comparison.split(" vs ")
        print(f"{ours} is {times:.2f}x faster than {theirs}")
    print("(us/request: median over the rounds; ratios and overheads: median of the per-round figures)")
    print()
    print("targets (issue 12):")
    for what, (group, key), limit, at_most in TARGETS:
        value = figures.get(group, {}).get(key)
        if value is None:
            continue
        holds = value <= limit if at_most else value >= limit
        verdict = "holds" if holds else "DOES NOT HOLD"
        print(f"  {what:45} {value:6.2f} {'<=' if at_most else '>='} {limit:<5} {verdict}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=60)
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--json", type=Path, help="also write the results (microseconds per request) to this file")
    args = parser.parse_args()
    cases = {**litestar_cases(), **starlette_cases()}
    samples = asyncio.run(measure(cases, args.rounds, args.requests))
    figures = summary(samples)
    report(figures)
    if args.json:
        settings = {"rounds": args.rounds, "requests": args.requests}
        data = {
            "benchmark": "bench",
            "unit": "us/request",
            "settings": settings,
            "results": figures["us_per_request"],
            **figures,
            "samples": samples,
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(data, indent=2) + "\n")


if __name__ == "__main__":
    main()
