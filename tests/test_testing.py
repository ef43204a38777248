"""The testing helpers (``litestar_flash_sessions.testing``) and the pytest plugin, on every store.

Litestar's test clients run the app on an event loop of their own, in a thread; a store opened
on another loop would break there (the store tests say so). So each test here opens the
harness's store on a blocking portal of its own and lets its test clients run the app on that
portal (``on(portal, client)``): the app, the store and the helpers' calls share one loop, and
the async tests' own loop is another one, as in a user's suite.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, TypeVar

import httpx
import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal
from litestar import Litestar
from litestar.exceptions import ImproperlyConfiguredException
from litestar.testing import AsyncTestClient, TestClient
from litestar.testing.client.base import BaseTestClient

from litestar_flash_sessions import SessionConfig, SessionPlugin, SessionTooLargeError
from litestar_flash_sessions.session import FlashMessage
from litestar_flash_sessions.stores import CookieStore, SessionBackend
from litestar_flash_sessions.testing import (
    SessionData,
    SessionSeeder,
    aget_session,
    aset_session,
    client_session_config,
    get_session,
    read_session,
    seed_session,
    set_session,
)
from tests.app import build_app
from tests.conftest import in_loop_client
from tests.harness import SECRET, FakeClock, Harness

C = TypeVar("C", bound="BaseTestClient[Any]")


@pytest.fixture
def portal() -> Iterator[BlockingPortal]:
    """The event loop the test's clients run the app on (instead of one each)."""
    with start_blocking_portal() as opened:
        yield opened


@pytest.fixture
def app_store(
    harness: Harness, clock: FakeClock, harness_server: str, portal: BlockingPortal
) -> Iterator[SessionBackend]:
    """The harness's store, opened (and closed) on the app's loop."""
    with portal.wrap_async_context_manager(harness.open(clock, harness_server)) as opened:
        yield opened


def on(portal: BlockingPortal, client: C) -> C:
    """Make a Litestar test client run the app on ``portal`` (it uses a portal it is given)."""
    client.blocking_portal = portal
    return client


def cookie_name(app: Litestar) -> str:
    return app.plugins.get(SessionPlugin).config.session_cookie_name


# --- TestClient ------------------------------------------------------------------------------


def test_a_seeded_session_reaches_the_app_and_reads_back(app_store: SessionBackend, portal: BlockingPortal) -> None:
    app = build_app(SessionConfig(store=app_store))
    with on(portal, TestClient(app)) as client:
        cookies = set_session(client, {"user": "ann", "cart": [1, 2]}, flashes={"notice": "Welcome back"})
        assert list(cookies) == [cookie_name(app)], "one cookie, under the app's name"
        read = client.get("/read/user").json()
        assert read["value"] == "ann"
        assert client.get("/read/cart").json()["value"] == [1, 2]
        seeded = get_session(client)
        assert seeded == {"user": "ann", "cart": [1, 2]}
        assert seeded.flashes == [FlashMessage("notice", "Welcome back")], "read back without consuming it"
        assert seeded.id == read["id"], "the session the app loaded"
        assert get_session(client).flashes == [FlashMessage("notice", "Welcome back")], "still pending"


def test_a_seeded_flash_is_shown_once(app_store: SessionBackend, portal: BlockingPortal) -> None:
    app = build_app(SessionConfig(store=app_store))
    with on(portal, TestClient(app)) as client:
        set_session(client, flashes=[("notice", "saved", "info")])
        assert get_session(client).flashes == [FlashMessage("notice", "saved", "info")]
        assert client.get("/read/notice").json()["value"] == "saved"
        assert client.get("/read/notice").json()["value"] is None, "shown once"
        assert get_session(client).flashes == []


def test_a_responses_session_reads_back(app_store: SessionBackend, portal: BlockingPortal) -> None:
    app = build_app(SessionConfig(store=app_store))
    with on(portal, TestClient(app)) as client:
        set_session(client, {"user": "ann"})
        changed = client.post("/set", json={"theme": "dark"})
        assert get_session(client, changed) == {"user": "ann", "theme": "dark"}
        logged_out = client.post("/logout")
        after = get_session(client, logged_out)
        assert after == {}
        assert after.id is None, "no session"
        assert get_session(client) == SessionData(), "the client's own cookies agree"


def test_a_new_seed_replaces_the_clients_session(app_store: SessionBackend, portal: BlockingPortal) -> None:
    app = build_app(SessionConfig(store=app_store))
    with on(portal, TestClient(app)) as client:
        set_session(client, {"user": "ann"}, flashes={"notice": "hi"})
        first = client.get("/id").json()["id"]
        set_session(client, {"user": "bob"})
        read = client.get("/read/user").json()
        assert read["value"] == "bob"
        assert read["id"] != first
        assert get_session(client).flashes == []
        assert set_session(client, {}) == {}, "an empty session is never stored"
        assert cookie_name(app) not in client.cookies, "and leaves the client without a session cookie"
        assert client.get("/read/user").json() == {"value": None, "id": None}


def test_litestars_own_session_data_methods_work_with_client_session_config(
    app_store: SessionBackend, portal: BlockingPortal
) -> None:
    app = build_app(SessionConfig(store=app_store))
    with on(portal, TestClient(app, session_config=client_session_config(app))) as client:
        client.set_session_data({"user": "ann"})
        assert client.get("/read/user").json()["value"] == "ann"
        client.post("/set", json={"theme": "dark"})
        assert client.get_session_data() == {"user": "ann", "theme": "dark"}


# --- AsyncTestClient -------------------------------------------------------------------------


async def test_an_async_test_client_is_seeded_and_read_on_the_apps_loop(
    app_store: SessionBackend, portal: BlockingPortal
) -> None:
    # This test runs on pytest-asyncio's loop; the store's connections live on the portal's.
    app = build_app(SessionConfig(store=app_store))
    async with on(portal, AsyncTestClient(app)) as client:
        await aset_session(client, {"user": "ann"}, flashes={"notice": "Welcome back"})
        assert (await client.get("/read/user")).json()["value"] == "ann"
        assert (await aget_session(client)).flashes == [FlashMessage("notice", "Welcome back")]
        response = await client.get("/read/notice")
        assert response.json()["value"] == "Welcome back"
        assert (await client.get("/read/notice")).json()["value"] is None, "shown once"
        after = await aget_session(client, response)
        assert after == {"user": "ann"}
        assert after.flashes == []


async def test_litestars_async_session_data_methods_work_on_a_store_without_connections(clock: FakeClock) -> None:
    # AsyncTestClient awaits them on the test's loop: fine for stores bound to no loop.
    for store in (None, CookieStore(SECRET, clock=clock)):
        app = build_app(SessionConfig() if store is None else SessionConfig(store=store))
        async with AsyncTestClient(app, session_config=client_session_config(app)) as client:
            await client.set_session_data({"user": "ann"})
            assert (await client.get("/read/user")).json()["value"] == "ann"
            assert await client.get_session_data() == {"user": "ann"}


def test_a_client_not_entered_is_seeded_on_a_fresh_loop_as_its_requests_run() -> None:
    app = build_app(SessionConfig())  # a MemoryStore: no lifespan needed
    client = TestClient(app)
    set_session(client, {"user": "ann"})
    assert client.get("/read/user").json()["value"] == "ann"
    assert get_session(client) == {"user": "ann"}


# --- the app in the test's own loop ----------------------------------------------------------


async def test_an_httpx_client_in_the_tests_loop_is_seeded_with_the_app_given(store: SessionBackend) -> None:
    app = build_app(SessionConfig(store=store))
    async with app.lifespan(), in_loop_client(app) as client:
        await aset_session(client, {"user": "ann"}, flashes={"notice": "hi"}, app=app)
        assert (await client.get("/read/notice")).json()["value"] == "hi"
        response = await client.get("/read/notice")
        assert response.json()["value"] is None, "shown once"
        session = await aget_session(client, app=app)
        assert session == {"user": "ann"}
        assert session.flashes == []
        assert await read_session(app, response) == {"user": "ann"}
        assert await read_session(app, client.cookies) == {"user": "ann"}

        cookies = await seed_session(app.plugins.get(SessionPlugin), {"user": "bob"})
        assert await read_session(store_config(app), cookies) == {"user": "bob"}
        assert await read_session(app, {}) == SessionData()


def store_config(app: Litestar) -> SessionConfig:
    return app.plugins.get(SessionPlugin).config


# --- the cookie store's numbered cookies -----------------------------------------------------


def test_a_large_cookie_session_is_split_and_replaced_whole(clock: FakeClock, portal: BlockingPortal) -> None:
    app = build_app(SessionConfig(store=CookieStore(SECRET, clock=clock)))
    with on(portal, TestClient(app)) as client:
        cookies = set_session(client, {"big": "x" * 6000})
        assert list(cookies) == ["session_data", "session_data.1", "session_data.2"]
        assert client.get("/read/big").json()["value"] == "x" * 6000
        assert get_session(client) == {"big": "x" * 6000}
        set_session(client, {"small": 1})
        assert sorted(client.cookies) == ["session_data"], "no chunk of the old session is left"
        assert client.get("/read/small").json()["value"] == 1


# --- what the helpers need -------------------------------------------------------------------


def test_the_helpers_say_what_they_need(portal: BlockingPortal) -> None:
    with on(portal, TestClient(Litestar([]))) as client, pytest.raises(LookupError, match="no SessionPlugin"):
        set_session(client, {"user": "ann"})
    app = build_app(SessionConfig(max_size_bytes=100))
    with on(portal, TestClient(app)) as client:
        with pytest.raises(SessionTooLargeError):
            set_session(client, {"user": "x" * 200})
        with pytest.raises(TypeError, match="cannot be encoded"):
            set_session(client, {"user": object()})


async def test_an_httpx_client_needs_the_app() -> None:
    async with httpx.AsyncClient(base_url="http://testserver.local") as client:
        with pytest.raises(TypeError, match=r"pass app=\.\.\."):
            await aget_session(client)


def test_litestars_own_session_data_methods_need_a_session_config(portal: BlockingPortal) -> None:
    # What Litestar's TestClient does with the plugin alone: it never looks at the app's middleware.
    app = build_app(SessionConfig())
    with (
        on(portal, TestClient(app)) as client,
        pytest.raises(ImproperlyConfiguredException, match="Session has not been initialized"),
    ):
        client.set_session_data({"user": "ann"})


def test_client_session_config_is_for_the_test_client_only() -> None:
    with pytest.raises(ImproperlyConfiguredException, match="TestClient"):
        _ = client_session_config(SessionConfig()).middleware


# --- the pytest plugin -----------------------------------------------------------------------


def test_the_pytest_plugin_gives_the_helpers(
    session_seeder: SessionSeeder, pytestconfig: pytest.Config, portal: BlockingPortal
) -> None:
    assert pytestconfig.pluginmanager.has_plugin("litestar_flash_sessions"), "registered by the entry point"
    app = build_app(SessionConfig())
    with on(portal, TestClient(app)) as client:
        session_seeder.set(client, {"user": "ann"}, flashes={"notice": "hi"})
        assert client.get("/read/notice").json()["value"] == "hi"
        assert session_seeder.get(client) == {"user": "ann"}


def test_seeding_a_cookie_the_client_would_not_send_says_why() -> None:
    from litestar.testing import TestClient

    from litestar_flash_sessions.testing import set_session as seed

    app = build_app(SessionConfig(cookie_domain="example.com"))  # the client's host is testserver.local
    with TestClient(app) as client, pytest.raises(ValueError, match="would not send the session cookie"):
        seed(client, {"user": "ann"})
    with TestClient(app, base_url="http://www.example.com") as client:
        seed(client, {"user": "ann"})
        assert client.get("/read/user").json()["value"] == "ann"
