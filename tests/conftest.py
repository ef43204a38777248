from __future__ import annotations

import functools
import importlib
import logging
import pkgutil
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from litestar import Litestar

from litestar_flash_sessions import SessionConfig
from litestar_flash_sessions.stores import SessionBackend, SessionStore
from tests.app import build_app
from tests.harness import HARNESSES, FakeClock, Harness
from tests.servers import (  # the session-scoped server fixtures
    mongo_url,
    postgres_url,
    redis_cluster_url,
    redis_url,
    sentinel_setup,
    valkey_url,
    webdis_url,
)

__all__ = ("mongo_url", "postgres_url", "redis_cluster_url", "redis_url", "sentinel_setup", "valkey_url", "webdis_url")

for module in pkgutil.iter_modules([str(Path(__file__).parent)]):
    if module.name.startswith("harness_"):
        importlib.import_module(f"tests.{module.name}")

ClientFactory = Callable[..., AbstractAsyncContextManager[httpx.AsyncClient]]


def in_loop_client(app: Litestar, base_url: str = "http://testserver.local") -> httpx.AsyncClient:
    """A client that runs the app in the test's own event loop, so that concurrent requests
    really interleave and the store's connections stay on one loop (Litestar's AsyncTestClient
    runs the app in a thread of its own, one request at a time). Lifespan is the caller's.
    """
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=base_url)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=sorted(HARNESSES))
def harness(request: pytest.FixtureRequest) -> Harness:
    return HARNESSES[request.param]


@pytest.fixture
def harness_server(harness: Harness, request: pytest.FixtureRequest) -> str:
    """The URL of the harness's server (its session fixture starts it the first time), else ``""``."""
    return str(request.getfixturevalue(harness.server_fixture)) if harness.server_fixture else ""


@pytest.fixture
def server_store(store: SessionBackend, harness: Harness) -> SessionStore:
    """The store under test, for tests of server-side records only (the cookie store is skipped:
    its sessions live in the browser)."""
    if not harness.server_side:
        pytest.skip("the cookie store keeps sessions in the browser: no server-side record")
    assert isinstance(store, SessionStore)
    return store


@pytest.fixture
async def store(harness: Harness, clock: FakeClock, harness_server: str) -> AsyncIterator[SessionBackend]:
    async with harness.open(clock, harness_server) as opened:
        yield opened


@asynccontextmanager
async def app_client(
    store: SessionBackend, base_url: str = "http://testserver.local", **config: Any
) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the contract app on ``store`` with the given config fields, lifespan running."""
    app = build_app(SessionConfig(store=store, **config))
    async with app.lifespan(), in_loop_client(app, base_url) as client:
        yield client


async def session_id(client: httpx.AsyncClient) -> str:
    """The id of the client's stored session."""
    value = (await client.get("/id")).json()["id"]
    assert isinstance(value, str)
    return value


@pytest.fixture
def make_client(store: SessionBackend) -> ClientFactory:
    """Open a test client on the contract app with ``store`` and the given config fields."""
    return functools.partial(app_client, store)


class RecordingHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    @property
    def text(self) -> str:
        return "\n".join(f"{record.levelname} {record.getMessage()}" for record in self.records)


@pytest.fixture
def session_log() -> Iterator[RecordingHandler]:
    """What the library logged. (Litestar's logging config replaces the root handlers, so caplog misses it.)"""
    handler = RecordingHandler()
    logger = logging.getLogger("litestar_flash_sessions")
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)
