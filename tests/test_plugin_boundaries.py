"""What the plugin keeps at its boundaries with the rest of an app: the app's own middleware,
mounted apps with plugins of their own, custom backends and stores, and a config changed after
it was made. Each test is a case an independent review found broken in a speed-up round."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from litestar import Litestar, asgi, get
from litestar.middleware import ASGIMiddleware
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from litestar_flash_sessions import Session, SessionBackend, SessionConfig, SessionPlugin
from litestar_flash_sessions.backend import Loaded, Outcome
from litestar_flash_sessions.stores import MemoryStore
from tests.conftest import in_loop_client
from tests.test_plugin import CountingStore


class MarkResponses(ASGIMiddleware):
    """An app's own middleware that marks every response it passes on (as security headers do)."""

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        async def marking(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message["headers"], (b"x-marked", b"1")]
            await send(message)

        await next_app(scope, receive, marking)


@get("/read")
async def read(session: Session) -> dict[str, Any]:
    return {"user": session.get("user")}


@get("/write")
async def write(session: Session) -> None:
    session.set("user", "ann")


async def test_a_store_outage_at_load_answers_503_through_the_apps_own_middleware() -> None:
    store = CountingStore()
    app = Litestar([read, write], middleware=[MarkResponses()], plugins=[SessionPlugin(SessionConfig(store=store))])
    async with app.lifespan(), in_loop_client(app) as client:
        await client.get("/write")
        store.down = True
        response = await client.get("/read")
    assert response.status_code == 503
    assert response.headers["x-marked"] == "1", "the app's middleware saw the response"
    assert response.headers["retry-after"] == "5"
    assert response.json()["detail"] == "Session store unavailable", "Litestar's own error body"


@get("/who")
async def who(session: Session) -> dict[str, Any]:
    session.set("who", session.get("who") or "set here")
    return {"who": session.get("who")}


async def test_a_mounted_app_with_a_plugin_of_its_own_keeps_its_own_sessions() -> None:
    inner_store, outer_store = MemoryStore(), MemoryStore()
    inner = Litestar([who], plugins=[SessionPlugin(SessionConfig(store=inner_store, cookie_name="inner"))])

    @asgi("/sub", is_mount=True, copy_scope=True)
    async def mounted(scope: Scope, receive: Receive, send: Send) -> None:
        await inner(scope, receive, send)

    outer_plugin = SessionPlugin(SessionConfig(store=outer_store, cookie_name="outer"))
    # The app-wide middleware FlashPlugin and SessionAuth need: it loads every request's session.
    outer = Litestar([mounted], plugins=[outer_plugin], middleware=[outer_plugin.session_backend_config.middleware])
    async with outer.lifespan(), inner.lifespan(), in_loop_client(outer) as client:
        response = await client.get("/sub/who")
    assert response.status_code == 200
    assert "inner=" in response.headers["set-cookie"]
    assert (len(inner_store), len(outer_store)) == (1, 0)


@pytest.mark.parametrize("child", ["plugin", "litestar"])
async def test_a_mounted_app_sharing_the_scope_leaves_the_parent_s_session_alone(child: str) -> None:
    # Mounted on the same scope (copy_scope=False, or Litestar 2's default), the sub-app sets
    # scope["session"] to its own session (its plugin's, or Litestar's own middleware's): that is
    # not a set_session() of the parent's.
    from litestar import Request
    from litestar.middleware.session.client_side import CookieBackendConfig

    @get("/set")
    async def set_own(session: Session) -> None:
        session.set("child_key", "child_value")

    @get("/set")
    async def set_litestar(request: Request[Any, Any, Any]) -> None:
        request.set_session({"cart": "child cart"})

    if child == "plugin":
        inner = Litestar([set_own], plugins=[SessionPlugin(SessionConfig(store=MemoryStore(), cookie_name="inner"))])
    else:
        inner = Litestar([set_litestar], middleware=[CookieBackendConfig(secret=b"0" * 16, key="inner").middleware])

    @asgi("/sub", is_mount=True, copy_scope=False)
    async def mounted(scope: Scope, receive: Receive, send: Send) -> None:
        await inner(scope, receive, send)

    plugin = SessionPlugin(SessionConfig(store=MemoryStore()))
    outer = Litestar([mounted, read, write], plugins=[plugin], middleware=[plugin.session_backend_config.middleware])
    async with outer.lifespan(), inner.lifespan(), in_loop_client(outer) as client:
        await client.get("/write")
        before = client.cookies["session"]
        response = await client.get("/sub/set")
        assert response.status_code == 200
        assert "session=" not in response.headers.get("set-cookie", ""), "the parent's session was rotated"
        assert client.cookies["session"] == before
        assert (await client.get("/read")).json() == {"user": "ann"}


def test_a_second_session_plugin_on_one_app_is_refused() -> None:
    # The session dependency names one store: the first plugin would be silently inert.
    first, second = SessionPlugin(SessionConfig(cookie_name="a")), SessionPlugin(SessionConfig(cookie_name="b"))
    with pytest.raises(ValueError, match="one SessionPlugin"):
        Litestar([who], plugins=[first, second])


class PersistentCookies(MemoryStore):
    """A custom store that makes every new cookie persistent, with the NamedTuple API of Outcome."""

    async def commit(self, loaded: Loaded, config: SessionConfig) -> Outcome:
        outcome = await super().commit(loaded, config)
        return outcome._replace(max_age=3600) if outcome.cookie and outcome.max_age is None else outcome


async def test_a_custom_backend_can_rewrite_the_outcome_as_a_named_tuple() -> None:
    app = Litestar([write], plugins=[SessionPlugin(SessionConfig(store=PersistentCookies()))])
    async with app.lifespan(), in_loop_client(app) as client:
        response = await client.get("/write")
    assert response.status_code == 200
    assert "Max-Age=3600" in response.headers["set-cookie"]
    cookie, expire, max_age, retry_flash = Outcome("v", max_age=5)
    assert (cookie, expire, max_age, retry_flash) == ("v", False, 5, False)


class ShiftedClock(MemoryStore):
    """A store whose public clock, ``now()``, can be moved ahead of the records' own."""

    ahead = 0.0

    def now(self) -> float:
        return super().now() + self.ahead


async def test_a_load_judges_timeouts_by_the_stores_public_clock() -> None:
    store = ShiftedClock()
    app = Litestar([read, write], plugins=[SessionPlugin(SessionConfig(store=store, expire_after_seconds=60))])
    async with app.lifespan(), in_loop_client(app) as client:
        await client.get("/write")
        assert (await client.get("/read")).json() == {"user": "ann"}
        store.ahead = 3600
        assert (await client.get("/read")).json() == {"user": None}, "idle for an hour by now(): dead"


class RecordsExpiry(MemoryStore):
    def __init__(self) -> None:
        super().__init__()
        self.expiries: list[int | None] = []

    async def set(self, session_id: str, record: bytes, expires_in: int | None, previous: bytes | None) -> bool:
        self.expiries.append(expires_in)
        return await super().set(session_id, record, expires_in, previous)


async def test_a_config_changed_after_it_was_made_is_followed() -> None:
    store = RecordsExpiry()
    config = SessionConfig(store=store)
    config.expire_after_seconds = 60
    assert config.ttl == 60
    assert dataclasses.replace(config, expire_after_seconds=120).ttl == 120
    app = Litestar([write], plugins=[SessionPlugin(config)])
    async with app.lifespan(), in_loop_client(app) as client:
        await client.get("/write")
    assert store.expiries == [60]


# Litestar's TestClient, nested, leaves an anyio stream of its own unclosed (without this plugin too).
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.parametrize("kind", ["memory", "redis", "postgres", "mongo", "webdis"])
def test_two_test_clients_of_one_app_at_once_share_its_store(kind: str, request: pytest.FixtureRequest) -> None:
    # Each TestClient runs the app's lifespan on an event loop of its own. The store, which may
    # own a client of its server, is started by the first and shut down by the last to end:
    # the second's end must not close what the first still uses.
    from litestar.testing import TestClient

    from litestar_flash_sessions.stores import MongoStore, PostgresStore, RedisStore, WebdisStore
    from tests.app import build_app
    from tests.harness_mongo import unique_database_name
    from tests.harness_postgres import unique_table
    from tests.harness_redis import unique_prefix

    store: SessionBackend
    if kind == "memory":
        store = MemoryStore()
    elif kind == "redis":
        store = RedisStore.from_url(request.getfixturevalue("redis_url"), prefix=unique_prefix())
    elif kind == "postgres":
        store = PostgresStore.from_url(request.getfixturevalue("postgres_url"), unique_table())
    elif kind == "mongo":
        store = MongoStore.from_url(request.getfixturevalue("mongo_url"), unique_database_name())
    else:
        store = WebdisStore.from_url(request.getfixturevalue("webdis_url"), prefix=unique_prefix())
    app = build_app(SessionConfig(store=store))
    with TestClient(app) as first:
        assert first.post("/set", json={"user": "ann"}).status_code == 200
        with TestClient(app) as second:
            assert second.get("/read/user").json()["value"] is None, "a browser of its own"
        assert first.get("/read/user").json()["value"] == "ann", "the first client's store still works"
        assert first.post("/set", json={"user": "bob"}).status_code == 200
    with TestClient(app) as again:  # and one after the other, as before
        assert again.post("/set", json={"user": "cy"}).status_code == 200
