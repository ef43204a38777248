"""What the contract suite needs from a store: a fresh instance, a look inside, and a clock.

Each store under test has a harness. A harness module registers itself in ``HARNESSES``; the
contract suite (``test_contract.py``) runs once per registered harness.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass

import pytest

from litestar_flash_sessions.commit import store_key
from litestar_flash_sessions.stores import CookieStore, MemoryStore, SessionBackend, SessionStore
from tests import servers

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

    ``open`` yields a fresh, empty store (and closes it after the test). ``clock`` is the store's
    injected clock, or ``None`` when the server keeps time itself (then expiry tests wait for real).
    ``server_side`` is False for the cookie store, whose records live in the browser.
    """

    name: str
    open: Callable[[FakeClock], AbstractAsyncContextManager[SessionBackend]]
    injects_clock: bool = True
    server_side: bool = True


HARNESSES: dict[str, Harness] = {}


def register(harness: Harness) -> Harness:
    HARNESSES[harness.name] = harness
    return harness


def server_url(variable: str) -> str:
    """The URL of a test server: from the environment, else of the servers tests/servers.py starts
    for this session at the first test that needs one.

    If none can be had the test is skipped, except under ``CI=true``, where it fails the run.
    """
    failure = servers.ensure()
    url = os.environ.get(variable)
    if not url:
        message = f"{variable} is not set and the test servers could not start: {failure}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return url


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
async def _memory(clock: FakeClock) -> AsyncIterator[SessionBackend]:
    yield MemoryStore(clock=clock)


@asynccontextmanager
async def _cookie(clock: FakeClock) -> AsyncIterator[SessionBackend]:
    yield CookieStore(SECRET, clock=clock)


register(Harness("memory", _memory))
register(Harness("cookie", _cookie, server_side=False))
