"""What the contract suite needs from a store: a fresh instance, a look inside, and a clock.

Each store under test has a harness. A harness module registers itself in ``HARNESSES``; the
contract suite (``test_contract.py``) runs once per registered harness.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass

from litestar_flash_sessions.commit import store_key
from litestar_flash_sessions.stores import CookieStore, MemoryStore, SessionBackend, SessionStore

SECRET = "Qm3v-8xTzL2pW9sKd7RbN4yHc6uJ1gFe0aVoZiYt5Mw"
"""A secret strong enough for the cookie store (``secrets.token_urlsafe(32)``)."""
OTHER_SECRET = "r7Jk2_Wq9ZxB4nLs8TvC1mYd6PfH3gUa0eKo5iRj-Nt"


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self, start: float | None = None) -> None:
        # Real time by default: a server's own reaper (a Mongo TTL index) compares with it.
        self.now = time.time() if start is None else start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Harness:
    """One store under test.

    ``open(clock, url)`` yields a fresh, empty store (and closes it after the test), on the server
    at ``url``: the value of the session fixture ``server_fixture`` (tests/servers.py), which
    starts the server the first time a test needs it; ``""`` for a store without a server.
    ``injects_clock`` is False when the server keeps time itself (then expiry tests wait for
    real). ``server_side`` is False for the cookie store, whose records live in the browser.
    """

    name: str
    open: Callable[[FakeClock, str], AbstractAsyncContextManager[SessionBackend]]
    injects_clock: bool = True
    server_side: bool = True
    server_fixture: str | None = None


HARNESSES: dict[str, Harness] = {}


def register(harness: Harness) -> Harness:
    HARNESSES[harness.name] = harness
    return harness


async def wait_until(condition: Callable[[], Awaitable[bool]], seconds: float = 2.0) -> None:
    """Poll ``condition`` every 20 ms until it holds or ``seconds`` have passed (for work done in
    the background, such as the plugin's periodic cleanup); the caller asserts the outcome."""
    for _ in range(int(seconds / 0.02)):
        if await condition():
            return
        await asyncio.sleep(0.02)


async def read_record(store: SessionStore, session_id: str) -> bytes | None:
    """What the store holds for ``session_id``, read without sliding its expiry."""
    return await store.get(store_key(session_id), None)


@asynccontextmanager
async def _memory(clock: FakeClock, _url: str) -> AsyncIterator[SessionBackend]:
    yield MemoryStore(clock=clock)


@asynccontextmanager
async def _cookie(clock: FakeClock, _url: str) -> AsyncIterator[SessionBackend]:
    yield CookieStore(SECRET, clock=clock)


register(Harness("memory", _memory))
register(Harness("cookie", _cookie, server_side=False))
