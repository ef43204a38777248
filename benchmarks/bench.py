"""In-process benchmark: microseconds per request, driven over ASGI with no sockets.

Run it with ``nox -s bench`` or ``python -m benchmarks.bench [--rounds N] [--requests N] [--json PATH]``.
Every case runs once per round, the cases interleaved, so that drift of the machine hits all
alike; the figure is the median over the rounds of the mean time per request in a round.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from litestar import Litestar, Request, get
from litestar.middleware.session.client_side import CookieBackendConfig
from litestar.middleware.session.server_side import ServerSideSessionConfig
from litestar.stores.memory import MemoryStore as LitestarMemoryStore

from litestar_flash_sessions import Session, SessionConfig, SessionPlugin
from litestar_flash_sessions.stores import CookieStore

ASGIApp = Callable[[dict[str, Any], Any, Any], Awaitable[None]]
SECRET = "benchmark-secret-0123456789abcdef"


@get("/")
async def bare() -> str:
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


def litestar_cases() -> dict[str, Litestar]:
    return {
        "bare litestar": Litestar([bare]),
        "ours, handler without session": Litestar([bare, ours_login], plugins=[SessionPlugin()]),
        "ours MemoryStore read+write": Litestar([ours_read_write, ours_login], plugins=[SessionPlugin()]),
        "ours CookieStore read+write": Litestar(
            [ours_read_write, ours_login], plugins=[SessionPlugin(SessionConfig(store=CookieStore(SECRET)))]
        ),
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
    """Calls an ASGI app in-process with a fixed request and a session cookie, if it sets one."""

    app: ASGIApp
    cookie: bytes = b""

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

    async def request(self, path: str = "/") -> list[tuple[bytes, bytes]]:
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

    async def log_in(self) -> None:
        """Get a session cookie, as a returning visitor has one."""
        cookies = [value.split(b";", 1)[0] for name, value in await self.request("/login") if name == b"set-cookie"]
        if cookies:
            self.cookie = b"; ".join(cookies)

    async def time(self, requests: int) -> float:
        """Mean microseconds per request over ``requests`` requests."""
        start = time.perf_counter_ns()
        for _ in range(requests):
            await self.request()
        return (time.perf_counter_ns() - start) / requests / 1000


def lifespan(app: Any) -> contextlib.AbstractAsyncContextManager[Any]:
    return app.lifespan() if isinstance(app, Litestar) else app.router.lifespan_context(app)


async def measure(
    apps: dict[str, Any], rounds: int, requests: int, without_session: tuple[str, ...] = ("bare",)
) -> dict[str, float]:
    """Median microseconds per request of each app; apps whose name starts with one of
    ``without_session`` are driven without logging in first."""
    async with contextlib.AsyncExitStack() as stack:
        for app in apps.values():
            await stack.enter_async_context(lifespan(app))
        return await measure_started(apps, rounds, requests, without_session)


async def measure_started(
    apps: dict[str, Any], rounds: int, requests: int, without_session: tuple[str, ...]
) -> dict[str, float]:
    drivers = {}
    for name, app in apps.items():
        driver = Driver(app)
        if not name.startswith(without_session):
            await driver.log_in()
        await driver.time(max(requests // 10, 10))  # warm up
        drivers[name] = driver
    samples: dict[str, list[float]] = {name: [] for name in drivers}
    gc.disable()
    try:
        for _ in range(rounds):
            for name, driver in drivers.items():
                samples[name].append(await driver.time(requests))
            gc.collect()
    finally:
        gc.enable()
    return {name: statistics.median(values) for name, values in samples.items()}


def report(results: dict[str, float]) -> None:
    base = results["bare litestar"]
    print(f"{'case':40} {'us/request':>11} {'x bare litestar':>16}")
    for name, micros in results.items():
        if "starlette" in name or "starsessions" in name:
            continue
        print(f"{name:40} {micros:11.1f} {micros / base:16.2f}")
    if "bare starlette" in results:
        starlette = results["bare starlette"]
        print(f"{'bare starlette':40} {starlette:11.1f} {starlette / base:16.2f}")
        for kind, ours in (("memory", "ours MemoryStore read+write"), ("cookie", "ours CookieStore read+write")):
            theirs = results[f"starsessions {kind} read+write"]
            print(
                f"{'starsessions ' + kind + ' read+write':40} {theirs:11.1f} {theirs / base:16.2f}"
                f"   overhead {theirs - starlette:6.1f} us over starlette, ours {results[ours] - base:6.1f} us"
                " over litestar"
            )
    print()
    for ours, theirs in (
        ("ours MemoryStore read+write", "litestar ServerSideSessionConfig"),
        ("ours CookieStore read+write", "litestar CookieBackendConfig"),
    ):
        print(f"{ours} is {results[theirs] / results[ours]:.2f}x faster than {theirs}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--json", type=Path, help="also write the results (microseconds per request) to this file")
    args = parser.parse_args()
    cases = {**litestar_cases(), **starlette_cases()}
    results = asyncio.run(measure(cases, args.rounds, args.requests))
    report(results)
    if args.json:
        settings = {"rounds": args.rounds, "requests": args.requests}
        data = {"benchmark": "bench", "unit": "us/request", "settings": settings, "results": results}
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(data, indent=2) + "\n")


if __name__ == "__main__":
    main()
