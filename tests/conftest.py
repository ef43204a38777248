from __future__ import annotations

import importlib
import logging
import pkgutil
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from litestar_flash_sessions import SessionConfig
from litestar_flash_sessions.stores import CookieStore, SessionStore
from tests.app import build_app
from tests.harness import HARNESSES, FakeClock, Harness

for module in pkgutil.iter_modules([str(Path(__file__).parent)]):
    if module.name.startswith("harness_"):
        importlib.import_module(f"tests.{module.name}")

ClientFactory = Callable[..., AbstractAsyncContextManager[AsyncTestClient[Any]]]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=sorted(HARNESSES))
def harness(request: pytest.FixtureRequest) -> Harness:
    return HARNESSES[request.param]


@pytest.fixture
async def store(harness: Harness, clock: FakeClock) -> AsyncIterator[SessionStore | CookieStore]:
    async with harness.open(clock) as opened:
        yield opened


@pytest.fixture
def make_client(store: SessionStore | CookieStore) -> ClientFactory:
    """Open a test client on the contract app with ``store`` and the given config fields."""

    @asynccontextmanager
    async def open_client(base_url: str = "http://testserver.local", **config: Any) -> AsyncIterator[AsyncTestClient[Any]]:
        app = build_app(SessionConfig(store=store, **config))
        async with AsyncTestClient(app, base_url=base_url) as client:
            yield client

    return open_client


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
