"""Per-user sessions on every server-side store: binding, listing, revoking, the cap, and the races.

The index must always be a superset of the user's live sessions (a revocation finds every one),
and once the requests of a race are done, exactly equal to them. ``index_of`` reads the index as
stored; ``live_of`` reads the records the browsers' cookies (and the index) lead to.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from litestar_flash_sessions import SessionConfig, UnsupportedStoreError, UserSessionManager, users
from litestar_flash_sessions.commit import store_key
from litestar_flash_sessions.lifetime import is_dead
from litestar_flash_sessions.record import Live
from litestar_flash_sessions.stores import CookieStore, SessionBackend, SessionStore
from tests.app import GATES, Gate, build_app
from tests.conftest import in_loop_client
from tests.harness import FakeClock, Harness
from tests.test_races import Browser, cookie_of, expires_cookie, in_order, race

ORDERS = ["request-first", "revocation-first"]
SECRET = "x" * 8 + "correct horse battery staple 1234567890"


@dataclass
class Site:
    """The contract app on one store, its config, and browsers on it."""

    config: SessionConfig
    client: httpx.AsyncClient

    @property
    def store(self) -> SessionStore:
        assert isinstance(self.config.store, SessionStore)
        return self.config.store

    @property
    def sessions(self) -> UserSessionManager:
        return UserSessionManager(self.config)

    def browser(self) -> Browser:
        return Browser(self.client)

    async def login(self, user: str, browser: Browser | None = None) -> Browser:
        """A browser (new, or the one given) whose session is bound to ``user``."""
        browser = browser or self.browser()
        response = await browser.request("POST", f"/act/{await self._open_gate()}/solo", {"bind": user})
        assert response.status_code == 200, response.text
        browser.cookie = cookie_of(response)
        assert browser.cookie is not None
        return browser

    async def _open_gate(self) -> str:
        meeting = uuid.uuid4().hex
        gate = GATES[meeting] = Gate(["solo"])
        gate.go["solo"].set()
        return meeting

    async def me(self, browser: Browser) -> dict[str, Any]:
        response = await browser.request("GET", "/me")
        assert response.status_code == 200, response.text
        return response.json()  # type: ignore[no-any-return]

    async def index_of(self, user: str) -> set[tuple[str, str]]:
        """The (handle, key) pairs the user's index holds, as stored."""
        _, index = await users._read_index(self.store, self.config, users.index_key(user))
        return {(entry.handle, key) for entry in index.entries for key in entry.keys}

    async def live_of(self, user: str, *browsers: Browser) -> set[tuple[str, str]]:
        """The (handle, key) pairs of the user's live sessions the browsers or the index lead to."""
        keys = {store_key(browser.cookie) for browser in browsers if browser.cookie} | {
            key for _, key in await self.index_of(user)
        }
        found = set()
        for key in keys:
            record = users._decoded(self.config, key, await self.store.get(key, None))
            owner = record.owner if isinstance(record, Live) else None
            if owner is not None and owner[0] == user and not is_dead(record, self.config, self.store.now()):  # type: ignore[arg-type]
                found.add((owner[1], key))
        return found

    async def assert_exact(self, user: str, *browsers: Browser) -> set[tuple[str, str]]:
        live = await self.live_of(user, *browsers)
        assert await self.index_of(user) == live
        return live


@asynccontextmanager
async def site(store: SessionBackend, **config: Any) -> AsyncIterator[Site]:
    settings = SessionConfig(store=store, **config)
    app = build_app(settings)
    async with app.lifespan(), in_loop_client(app) as client:
        yield Site(settings, client)


async def held(site: Site, browser: Browser, actions: dict[str, Any]) -> tuple[Gate, asyncio.Task[httpx.Response]]:
    """Send one request that acts on its session, then waits at a gate before it commits."""
    meeting = uuid.uuid4().hex
    gate = GATES[meeting] = Gate(["a"])
    task = asyncio.create_task(browser.request("POST", f"/act/{meeting}/a", actions))
    await asyncio.wait_for(gate.everyone_here.wait(), 10)
    return gate, task


async def against_revocation(
    site: Site, browser: Browser, actions: dict[str, Any], revocation: Callable[[], Awaitable[Any]], order: str
) -> httpx.Response:
    """Race a request against a revocation: the request loads and acts first, then the two commit
    in ``order``."""
    gate, task = await held(site, browser, actions)
    if order == "revocation-first":
        await revocation()
        gate.go["a"].set()
        return await task
    gate.go["a"].set()
    response = await task
    await revocation()
    return response


# --- binding and listing -------------------------------------------------------------------------


async def test_binding_rotates_and_lists_the_session(server_store: SessionStore) -> None:
    async with site(server_store) as s:
        browser = s.browser()
        anonymous = await browser.start({"cart": 3})
        await s.login("ann", browser)
        assert browser.cookie != anonymous
        assert await browser.live_id(anonymous) is None  # the id planted before login is worthless
        me = await s.me(browser)
        assert me["user"] == "ann"
        assert me["values"] == {"cart": 3}
        listed = (await browser.request("GET", "/my-sessions")).json()
        assert [(item["handle"], item["current"], item["device"]) for item in listed] == [(me["handle"], True, {})]
        assert listed[0]["created_at"] <= listed[0]["last_seen"]
        assert await s.assert_exact("ann", browser) == {(me["handle"], store_key(browser.cookie or ""))}
        assert (await s.browser().request("GET", "/my-sessions")).status_code == 401


async def test_device_info_keeps_what_the_hook_returns(server_store: SessionStore) -> None:
    def device(request: Any) -> dict[str, str]:
        return {"user_agent": request.headers.get("user-agent", "")}

    async with site(server_store, device_info=device) as s:
        browser = s.browser()
        response = await browser.client.post(
            f"/act/{await s._open_gate()}/solo", json={"bind": "ann"}, headers={"user-agent": "Firefox/140"}
        )
        browser.cookie = cookie_of(response)
        (info,) = await s.sessions.list_sessions("ann")
        assert info.device == {"user_agent": "Firefox/140"}


async def test_revoke_others_keeps_the_current_one(server_store: SessionStore) -> None:
    async with site(server_store) as s:
        laptop, phone, tablet = [await s.login("ann") for _ in range(3)]
        bob = await s.login("bob")
        keep = (await s.me(laptop))["handle"]
        assert await s.sessions.revoke_others("ann", keep) == 2
        assert [(await s.me(b))["user"] for b in (laptop, phone, tablet, bob)] == ["ann", None, None, "bob"]
        assert [info.handle for info in await s.sessions.list_sessions("ann", current=keep)] == [keep]
        assert await s.assert_exact("ann", laptop, phone, tablet) == {(keep, store_key(laptop.cookie or ""))}


async def test_revoke_one_by_handle_and_only_the_users_own(server_store: SessionStore) -> None:
    async with site(server_store) as s:
        laptop, phone = await s.login("ann"), await s.login("ann")
        bob = await s.login("bob")
        bobs = (await s.me(bob))["handle"]
        assert await s.sessions.revoke("ann", bobs) is False  # not ann's
        assert await s.sessions.revoke("ann", "no-such-handle") is False
        assert await s.sessions.revoke("ann", (await s.me(phone))["handle"]) is True
        assert [(await s.me(b))["user"] for b in (laptop, phone, bob)] == ["ann", None, "bob"]
        await s.assert_exact("ann", laptop, phone)


async def test_revoke_all_from_plain_async_code(server_store: SessionStore) -> None:
    async with site(server_store) as s:
        browsers = [await s.login("ann") for _ in range(3)]
    # The app has stopped: a script opens the store itself.
    config = s.config
    async with config.store.lifespan():
        assert await UserSessionManager(config).revoke_all("ann") == 3
    async with site(server_store) as s:
        for browser in browsers:
            browser.client = s.client
        assert [(await s.me(b))["user"] for b in browsers] == [None, None, None]
        assert await s.sessions.list_sessions("ann") == []
        assert await s.index_of("ann") == set()


async def test_logout_and_unbind_leave_the_index(server_store: SessionStore) -> None:
    async with site(server_store) as s:
        leaving, unbinding, staying = [await s.login("ann") for _ in range(3)]
        assert expires_cookie(await leaving.request("POST", "/logout"))
        unbound = await unbinding.request("POST", f"/act/{await s._open_gate()}/solo", {"unbind": True})
        assert expires_cookie(unbound), "a session that held nothing but its binding ends, as a logout"
        assert (await s.me(unbinding))["user"] is None
        assert await s.assert_exact("ann", leaving, unbinding, staying) == {
            ((await s.me(staying))["handle"], store_key(staying.cookie or ""))
        }


async def test_rotation_keeps_the_handle_and_moves_the_key(server_store: SessionStore) -> None:
    async with site(server_store) as s:
        browser = await s.login("ann")
        handle, old = (await s.me(browser))["handle"], browser.cookie
        browser.cookie = cookie_of(await browser.request("POST", "/rotate"))
        assert browser.cookie not in (None, old)
        assert (await s.me(browser))["handle"] == handle
        assert await s.assert_exact("ann", browser) == {(handle, store_key(browser.cookie or ""))}


async def test_binding_to_another_user_moves_the_session(server_store: SessionStore) -> None:
    async with site(server_store) as s:
        browser = await s.login("ann")
        await s.login("bob", browser)
        assert (await s.me(browser))["user"] == "bob"
        assert await s.index_of("ann") == set()
        assert len(await s.assert_exact("bob", browser)) == 1


async def test_max_sessions_per_user_revokes_the_oldest(server_store: SessionStore, clock: FakeClock) -> None:
    async with site(server_store, max_sessions_per_user=2) as s:
        first = await s.login("ann")
        clock.advance(1)
        second = await s.login("ann")
        clock.advance(1)
        third = await s.login("ann")
        assert [(await s.me(b))["user"] for b in (first, second, third)] == [None, "ann", "ann"]
        assert len(await s.assert_exact("ann", first, second, third)) == 2


async def test_expired_sessions_are_pruned_lazily(
    server_store: SessionStore, harness: Harness, clock: FakeClock
) -> None:
    async with site(server_store, expire_after_seconds=60) as s:
        gone, kept = await s.login("ann"), await s.login("ann")
        await server_store.delete(store_key(gone.cookie or ""))  # as the server's own expiry does
        (info,) = await s.sessions.list_sessions("ann")
        assert info.handle == (await s.me(kept))["handle"]
        assert await s.index_of("ann") == {(info.handle, store_key(kept.cookie or ""))}
        if harness.injects_clock:  # past the idle timeout, by the store's clock
            clock.advance(120)
            assert await s.sessions.list_sessions("ann") == []
            assert await s.index_of("ann") == set()


async def test_ordinary_requests_make_no_extra_round_trip(server_store: SessionStore) -> None:
    async with site(server_store) as s:
        browser = await s.login("ann")
        calls: list[str] = []
        for name in ("get", "set", "delete"):
            real = getattr(server_store, name)

            def counting(*args: Any, _real: Any = real, _name: str = name) -> Any:
                calls.append(_name)
                return _real(*args)

            setattr(server_store, name, counting)
        try:
            await browser.request("GET", "/read/x")
            assert calls == ["get"]
            calls.clear()
            await browser.request("POST", "/set", {"x": 1})
            assert calls == ["get", "set"]
            calls.clear()
            await s.browser().request("GET", "/plain")
            assert calls == []
        finally:
            for name in ("get", "set", "delete"):
                delattr(server_store, name)


# --- races: each in both orders ----------------------------------------------------------------


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize(
    "actions",
    [{"set": {"x": 1}}, {"rotate": True}, {"logout": True}, {"unbind": True}, {"relogin": True}],
    ids=lambda a: next(iter(a)),
)
async def test_a_request_in_flight_cannot_bring_a_revoked_session_back(
    server_store: SessionStore, order: str, actions: dict[str, Any]
) -> None:
    async with site(server_store) as s:
        browser, other = await s.login("ann"), await s.login("ann")
        old = browser.cookie
        response = await against_revocation(s, browser, actions, lambda: s.sessions.revoke_all("ann"), order)
        assert response.status_code == 200
        browser.cookie = cookie_of(response) if not expires_cookie(response) else None
        if order == "revocation-first":
            assert browser.cookie is None or ("unbind" in actions and (await s.me(browser))["user"] is None)
        for cookie in {old, browser.cookie} - {None}:
            assert (await s.me(Browser(s.client, cookie=cookie)))["user"] is None
        assert (await s.me(other))["user"] is None
        assert await s.assert_exact("ann", browser, other) == set()
        record = users._decoded(s.config, store_key(old or ""), await server_store.get(store_key(old or ""), None))
        assert not isinstance(record, Live) or record.user is None


@pytest.mark.parametrize("order", ORDERS)
async def test_a_revocation_racing_a_login_keeps_the_newer_one(server_store: SessionStore, order: str) -> None:
    async with site(server_store) as s:
        current, older = await s.login("ann"), await s.login("ann")
        keep = (await s.me(current))["handle"]
        arriving = s.browser()
        await arriving.start({"cart": 1})
        response = await against_revocation(
            s, arriving, {"bind": "ann"}, lambda: s.sessions.revoke_others("ann", keep), order
        )
        arriving.cookie = cookie_of(response)
        expected = "ann" if order == "revocation-first" else None  # the login after the revocation wins
        assert [(await s.me(b))["user"] for b in (current, older, arriving)] == ["ann", None, expected]
        assert len(await s.assert_exact("ann", current, older, arriving)) == (2 if expected else 1)


@pytest.mark.parametrize("order", ["a-first", "b-first"])
async def test_a_binding_racing_a_rotation_of_the_same_session(server_store: SessionStore, order: str) -> None:
    async with site(server_store) as s:
        browser = s.browser()
        await browser.start({"cart": 1})
        responses = await race(
            browser, {"a": ("POST", {"bind": "ann"}), "b": ("POST", {"rotate": True})}, in_order(order)
        )
        cookies = [cookie_of(response) for response in responses.values()]
        (live,) = [cookie for cookie in cookies if cookie]  # one rotation, one follower
        browser.cookie = live
        assert (await s.me(browser))["user"] == "ann"
        assert len(await s.assert_exact("ann", browser)) == 1


class PausingWrites:
    """Holds the first write of a record bound to a user, after its key was listed, until released."""

    def __init__(self, store: SessionStore, config: SessionConfig) -> None:
        self.store, self.config = store, config
        self.paused = asyncio.Event()
        self.release = asyncio.Event()
        self.real = store.set
        store.set = self.set  # type: ignore[method-assign]

    async def set(self, key: str, record: bytes, expires_in: int | None, previous: bytes | None) -> bool:
        decoded = users._decoded(self.config, key, record)
        if isinstance(decoded, Live) and decoded.user is not None and not self.paused.is_set():
            self.paused.set()
            await self.release.wait()
        return await self.real(key, record, expires_in, previous)

    def undo(self) -> None:
        del self.store.set  # type: ignore[method-assign]


async def a_login_between_listing_and_writing(s: Site) -> None:
    """A login has listed its key but not written it when "log out everywhere" runs: the
    revocation must still end up with no live session outside the index."""
    pause = PausingWrites(s.store, s.config)
    try:
        task = asyncio.create_task(s.login("ann"))
        await asyncio.wait_for(pause.paused.wait(), 10)
        await s.sessions.revoke_all("ann")
        pause.release.set()
        browser = await task
    finally:
        pause.undo()
    live = await s.assert_exact("ann", browser)
    assert ((await s.me(browser))["user"] == "ann") == bool(live)


async def test_a_login_between_listing_and_writing_is_never_lost_from_the_index(server_store: SessionStore) -> None:
    async with site(server_store) as s:
        await a_login_between_listing_and_writing(s)


async def test_that_race_fails_without_the_tombstone_at_an_empty_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """The guard: a revocation writes a tombstone at a listed key that holds nothing yet."""
    real = users.revoke_key

    async def sparing_empty_keys(store: SessionStore, config: SessionConfig, owner: Any, key: str) -> list[str]:
        if await store.get(key, None) is not None:
            return await real(store, config, owner, key)
        return [key]  # unlisted as ended, with no tombstone

    monkeypatch.setattr(users, "revoke_key", sparing_empty_keys)
    from tests.test_races import YieldingStore

    async with site(YieldingStore(clock=FakeClock())) as s:
        with pytest.raises(AssertionError):
            await a_login_between_listing_and_writing(s)


async def test_twenty_concurrent_logins_logouts_and_revocations(server_store: SessionStore) -> None:
    async with site(server_store) as s:
        existing = [await s.login("ann") for _ in range(8)]
        handles = [(await s.me(b))["handle"] for b in existing]
        arriving = [s.browser() for _ in range(8)]

        async def login(browser: Browser) -> None:
            await s.login("ann", browser)

        async def logout(browser: Browser) -> None:
            response = await browser.request("POST", "/logout")
            assert response.status_code == 200

        operations: list[Awaitable[Any]] = [login(browser) for browser in arriving]
        operations += [logout(browser) for browser in existing[:6]]
        operations += [s.sessions.revoke("ann", handles[6]), s.sessions.revoke_others("ann", handles[7])]
        operations += [s.sessions.revoke("ann", handle) for handle in handles[:2]]
        operations += [s.sessions.list_sessions("ann"), s.sessions.revoke_all("bob")]
        assert len(operations) == 20
        await asyncio.gather(*operations)
        everyone = [*existing, *arriving]
        live = await s.assert_exact("ann", *everyone)
        assert {info.handle for info in await s.sessions.list_sessions("ann")} == {handle for handle, _ in live}
        # Logged out or revoked; the one revoke_others kept stays.
        assert [(await s.me(b))["user"] for b in existing] == [None] * 7 + ["ann"]
        assert [status for b in everyone for status in b.statuses if status >= 500] == []


# --- the cookie store ---------------------------------------------------------------------------


async def test_cookie_store_binds_but_cannot_list_or_revoke() -> None:
    store = CookieStore(SECRET)
    async with site(store) as s:
        browser = s.browser()
        response = await browser.request("POST", f"/act/{await s._open_gate()}/solo", {"bind": "ann"})
        browser.cookie = response.cookies.get("session_data")
        browser.name = "session_data"
        assert (await s.me(browser))["user"] == "ann"
        assert (await browser.request("GET", "/my-sessions")).status_code == 501
        with pytest.raises(UnsupportedStoreError, match="keeps each session in its browser"):
            await s.sessions.list_sessions("ann")
        with pytest.raises(UnsupportedStoreError):
            await s.sessions.revoke_all("ann")
    with pytest.raises(ValueError, match="needs a server-side store"):
        SessionConfig(store=store, max_sessions_per_user=3)


def test_binding_checks_the_user_id() -> None:
    from litestar_flash_sessions.backend import Loaded

    session = Loaded.new().session
    for bad in ("", "x" * 257, 42):
        with pytest.raises(ValueError, match="user_id"):
            session.bind_user(bad)  # type: ignore[arg-type]
    session.bind_user("ann")
    assert session.user_id == "ann"
    assert session.handle is not None
    handle = session.handle
    session.bind_user("ann")
    assert session.handle == handle  # the same user: the same device entry
    session.unbind_user()
    assert session.user_id is None
    assert session.handle is None


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"max_sessions_per_user": 0}, "max_sessions_per_user must be a positive whole number"),
        ({"max_sessions_per_user": True}, "max_sessions_per_user must be a positive whole number"),
        ({"device_info": {"user_agent": "x"}}, "device_info must be a callable"),
    ],
)
def test_bad_per_user_settings_are_refused(settings: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SessionConfig(**settings)


async def test_a_test_can_seed_a_session_bound_to_a_user(server_store: SessionStore) -> None:
    """The testing helpers bind a seeded session as a login would: listed, revocable, readable back."""
    from litestar_flash_sessions.testing import aget_session, aset_session

    async with site(server_store) as s:
        cookies = await aset_session(s.client, {"email": "ann@example.com"}, user="ann", app=s.config)
        listed = (await s.client.get("/my-sessions")).json()
        assert [item["current"] for item in listed] == [True]
        seeded = await aget_session(s.client, app=s.config)
        assert seeded.user_id == "ann"
        assert seeded == {"email": "ann@example.com"}
        browser = Browser(s.client, cookie=cookies["session"])
        assert len(await s.assert_exact("ann", browser)) == 1
        assert await s.sessions.revoke_all("ann") == 1
        assert (await aget_session(s.client, app=s.config)).user_id is None


async def test_a_visitor_not_logged_in_has_no_sessions_and_odd_user_ids_are_refused_clearly() -> None:
    # A "my devices" handler passes session.user_id, None for an anonymous visitor: no sessions,
    # not a 500. A user id that could be neither stored nor hashed is a ValueError everywhere.
    from litestar_flash_sessions import FlashSession
    from litestar_flash_sessions.backend import Loaded
    from litestar_flash_sessions.stores import MemoryStore

    manager = UserSessionManager(SessionConfig(store=MemoryStore()))
    assert await manager.list_sessions(None) == []
    assert await manager.revoke_all(None) == 0
    assert await manager.revoke_others(None, keep=None) == 0
    assert await manager.revoke(None, "handle") is False
    lone_surrogate = "ann\udcff"
    with pytest.raises(ValueError, match="UTF-8"):
        await manager.list_sessions(lone_surrogate)
    with pytest.raises(ValueError, match="UTF-8"):
        await manager.revoke_all(lone_surrogate)
    session: FlashSession = Loaded.new().session
    with pytest.raises(ValueError, match="UTF-8"):
        session.bind_user(lone_surrogate)
    assert session.user_id is None
