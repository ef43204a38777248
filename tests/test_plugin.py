"""The plugin's wiring: who pays for sessions, the OpenAPI schema, lifespan, faults."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import warnings
from typing import Any

import pytest
from litestar import Litestar, get, post
from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException
from litestar.handlers import BaseRouteHandler
from litestar.params import JSONBody

from litestar_flash_sessions import Session, SessionConfig, SessionPlugin
from litestar_flash_sessions.middleware import SessionMiddleware
from litestar_flash_sessions.stores import CookieStore, MemoryStore, SessionStore, StoreUnavailableError
from tests.app import HANDLERS, build_app
from tests.conftest import RecordingHandler, in_loop_client
from tests.harness import SECRET


class CountingStore(MemoryStore):
    """A memory store that counts its calls and can be switched off."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []
        self.down = False
        self.started = self.stopped = 0

    def _call(self, name: str) -> None:
        self.calls.append(name)
        if self.down:
            raise StoreUnavailableError("CountingStore: connection refused")

    async def get(self, session_id: str, expires_in: int | None) -> bytes | None:
        self._call("get")
        return await super().get(session_id, expires_in)

    async def set(self, session_id: str, record: bytes, expires_in: int | None, previous: bytes | None) -> bool:
        self._call("set")
        return await super().set(session_id, record, expires_in, previous)

    async def delete(self, session_id: str) -> None:
        self._call("delete")
        await super().delete(session_id)

    async def startup(self) -> None:
        self.started += 1

    async def shutdown(self) -> None:
        self.stopped += 1


def handler_stack(app: Litestar, path: str) -> list[type]:
    """The classes of the ASGI apps wrapped around a route's handler."""
    handler = app.asgi_router.root_route_map_node.children[path].asgi_handlers  # type: ignore[attr-defined]
    layers = []
    current: Any = next(iter(handler.values()))[0]
    while current is not None:
        layers.append(type(current))
        current = getattr(current, "app", None)
    return layers


async def test_handler_without_session_does_no_session_work() -> None:
    store = CountingStore()
    app = build_app(SessionConfig(store=store))
    async with app.lifespan(), in_loop_client(app) as client:
        await client.post("/set", json={"user": "ann"})
        store.calls.clear()
        response = await client.get("/plain")
        assert response.text == "plain"
        assert store.calls == []
        assert "set-cookie" not in response.headers
        assert "vary" not in response.headers
    assert SessionMiddleware not in handler_stack(app, "/plain"), "its response is not wrapped"
    assert SessionMiddleware in handler_stack(app, "/id")


async def test_store_calls_per_request() -> None:
    store = CountingStore()
    app = build_app(SessionConfig(store=store))
    async with app.lifespan(), in_loop_client(app) as client:
        await client.get("/id")
        assert store.calls == [], "no cookie: nothing to read"
        await client.post("/set", json={"user": "ann"})
        assert store.calls == ["set"]
        store.calls.clear()
        await client.get("/read/user")
        assert store.calls == ["get"], "read only: one read, no write"
        store.calls.clear()
        await client.post("/set", json={"user": "bob"})
        assert store.calls == ["get", "set"], "changed: one read and one write"


def only_ann(connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> None:
    if connection.session.get("user") != "ann":
        raise NotAuthorizedException("no")


@get("/guarded", guards=[only_ann])
async def guarded(session: Session) -> str:
    return f"hello {session.get('user')}"


@get("/unguarded")
async def unguarded(session: Session) -> str:
    return "ok"


@post("/login-for-guard-test")
async def login_for_guard_test(session: Session, data: JSONBody[dict[str, str]]) -> None:
    session.set("user", data["user"])


async def test_a_guard_reads_request_session_loaded_before_it_and_the_handler_gets_the_same() -> None:
    store = CountingStore()
    app = Litestar([guarded, unguarded, login_for_guard_test], plugins=[SessionPlugin(SessionConfig(store=store))])
    async with app.lifespan(), in_loop_client(app) as client:
        await client.post("/login-for-guard-test", json={"user": "bob"})
        store.calls.clear()
        assert (await client.get("/guarded")).status_code == 401
        assert store.calls == ["get"], "one read, before the guard"
        await client.post("/login-for-guard-test", json={"user": "ann"})
        response = await client.get("/guarded")
        assert response.text == "hello ann"
        store.calls.clear()
        assert (await client.get("/unguarded")).text == "ok"
        assert store.calls == ["get"], "loaded once, by the dependency, on a route without guards"


async def test_store_lifespan_hooks_run() -> None:
    store = CountingStore()
    app = build_app(SessionConfig(store=store))
    async with app.lifespan():
        assert (store.started, store.stopped) == (1, 0)
    assert (store.started, store.stopped) == (1, 1)


async def test_store_down_gives_503_and_recovers(session_log: RecordingHandler) -> None:
    store = CountingStore()
    app = build_app(SessionConfig(store=store))
    async with app.lifespan(), in_loop_client(app) as client:
        await client.post("/set", json={"user": "ann"})
        store.down = True
        response = await client.get("/read/user")
        assert response.status_code == 503
        assert len(response.content) < 200
        assert "set-cookie" not in response.headers
        assert "CountingStore" in session_log.text
        store.down = False
        assert (await client.get("/read/user")).json()["value"] == "ann", "no restart needed"


@pytest.mark.parametrize(
    ("error", "status", "body", "logged"),
    [
        (
            StoreUnavailableError("CountingStore: timed out"),
            503,
            {"status_code": 503, "detail": "Session store unavailable"},
            "session store unavailable, answering 503 (CountingStore)",
        ),
        (
            RuntimeError("permission denied by the server's ACL"),
            500,
            {"status_code": 500, "detail": "Internal Server Error"},
            "session not saved: the store failed (CountingStore)",
        ),
    ],
)
async def test_a_store_failing_at_save_answers_in_place_of_the_handler_and_writes_nothing(
    session_log: RecordingHandler, error: Exception, status: int, body: dict[str, object], logged: str
) -> None:
    store = CountingStore()
    app = build_app(SessionConfig(store=store))
    async with app.lifespan(), in_loop_client(app) as client:
        await client.post("/set", json={"user": "ann"})
        original_set = store.set

        async def failing_set(*args: Any) -> bool:
            raise error

        store.set = failing_set  # type: ignore[method-assign]
        response = await client.post("/set", json={"user": "bob"})
        assert response.status_code == status
        assert response.json() == body, "Litestar's own error body, as for a load that fails"
        assert "set-cookie" not in response.headers
        assert logged in session_log.text
        store.set = original_set  # type: ignore[method-assign]
        assert (await client.get("/read/user")).json()["value"] == "ann", "the old session is intact"


@pytest.mark.parametrize("max_cookies", [1, 4])
async def test_a_session_too_large_for_the_cookies_is_refused_at_set(max_cookies: int) -> None:
    store = CookieStore(SECRET, max_cookies=max_cookies)
    app = build_app(SessionConfig(store=store))
    async with app.lifespan(), in_loop_client(app) as client:
        await client.post("/set", json={"user": "ann"})
        limit = store.max_record_bytes
        assert limit is not None
        refused = (await client.post("/set-too-large", json={"key": "big", "size": limit + 1})).json()
        assert str(limit) in refused["error"]
        assert refused["has"] is False
        assert (await client.get("/read/user")).json()["value"] == "ann", "the old cookie still works"
        near_limit = (await client.post("/set-too-large", json={"key": "big", "size": limit - 200})).json()
        assert near_limit == {"error": "", "has": True}
        assert (await client.get("/has/big")).json() == {"has": True}


def test_no_deprecation_warning_from_litestar() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        Litestar(HANDLERS, plugins=[SessionPlugin()])
    assert [str(w.message) for w in caught] == []


def test_default_config_uses_a_memory_store() -> None:
    plugin = SessionPlugin()
    assert isinstance(plugin.config.store, MemoryStore)
    assert isinstance(plugin.config.store, SessionStore)


def test_two_apps_from_one_handler_set_do_not_share_wiring() -> None:
    @get("/x")
    async def x(session: Session) -> None:
        session.set("a", 1)

    first = Litestar([x], plugins=[SessionPlugin()])
    second = Litestar([x], plugins=[SessionPlugin()])
    assert handler_stack(first, "/x").count(SessionMiddleware) == 1
    assert handler_stack(second, "/x").count(SessionMiddleware) == 1


class CleanedStore(MemoryStore):
    def __init__(self, fail_first: bool = False) -> None:
        super().__init__()
        self.runs = 0
        self.fail_first = fail_first
        self.ran_twice = asyncio.Event()

    async def delete_expired(self) -> int:
        self.runs += 1
        if self.runs >= 2:
            self.ran_twice.set()
        if self.fail_first and self.runs == 1:
            raise StoreUnavailableError("CleanedStore: down")
        return await super().delete_expired()


async def test_expired_sessions_are_cleaned_periodically_even_after_a_failure(session_log: RecordingHandler) -> None:
    store = CleanedStore(fail_first=True)
    app = build_app(SessionConfig(store=store, cleanup_interval_seconds=0.001))
    async with app.lifespan():
        await asyncio.wait_for(store.ran_twice.wait(), 5)
    runs = store.runs
    assert "deleting expired sessions from CleanedStore failed" in session_log.text
    await asyncio.sleep(0)
    assert store.runs == runs, "the loop stops with the app"


async def test_cleanup_can_be_switched_off() -> None:
    store = CleanedStore()
    app = build_app(SessionConfig(store=store, cleanup_interval_seconds=None))
    async with app.lifespan():
        for _ in range(10):
            await asyncio.sleep(0)
    assert store.runs == 0


async def test_a_handler_registered_after_start_up_gets_its_session() -> None:
    @get("/late")
    async def late(session: Session) -> dict[str, Any]:
        return {"user": session.get("user")}

    app = build_app(SessionConfig())
    app.register(late)
    async with app.lifespan(), in_loop_client(app) as client:
        await client.post("/set", json={"user": "ann"})
        response = await client.get("/late")
        assert response.json() == {"user": "ann"}
        assert response.headers["vary"] == "Cookie"


def test_the_core_needs_no_database_driver_nor_cryptography() -> None:
    blocked = ["cryptography", "redis", "asyncpg", "aiosqlite", "pymongo", "motor", "httpx"]
    script = f"""
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {blocked!r}:
            raise ImportError("blocked: " + name)
sys.meta_path.insert(0, Block())
from litestar import Litestar
from litestar_flash_sessions import SessionConfig, SessionPlugin
from litestar_flash_sessions.stores import CookieStore, MemoryStore
Litestar([], plugins=[SessionPlugin(SessionConfig(store=MemoryStore()))])
try:
    from litestar_flash_sessions.stores import RedisStore
except ImportError as exc:
    print("lazy:", exc)
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "lazy: blocked: redis"
