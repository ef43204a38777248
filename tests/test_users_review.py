"""Review: interleavings of per-user sessions that tests/test_users.py does not force.

Each test forces one interleaving deterministically (a Gate, or a pause inside a store call) and
checks the invariant of docs/users.md: the index is a superset of the user's live bound sessions,
and equals them once the race settled.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from litestar_flash_sessions import users
from litestar_flash_sessions.commit import store_key
from litestar_flash_sessions.record import Ended, Live
from litestar_flash_sessions.stores import SessionStore
from tests.app import GATES, Gate
from tests.harness import FakeClock, Harness
from tests.test_races import cookie_of
from tests.test_users import PausingWrites, held, site


class Pause:
    """Pauses the first store call (``get`` or ``set``) that ``when`` picks, before or after it runs."""

    def __init__(self, store: SessionStore, name: str, when: Callable[..., bool], *, after: bool = False) -> None:
        self.store, self.name, self.when, self.after = store, name, when, after
        self.paused = asyncio.Event()
        self.release = asyncio.Event()
        self.real = getattr(store, name)
        setattr(store, name, self.call)

    async def call(self, *args: Any) -> Any:
        hit = not self.paused.is_set() and self.when(*args)
        if hit and not self.after:
            self.paused.set()
            await self.release.wait()
        result = await self.real(*args)
        if hit and self.after:
            self.paused.set()
            await self.release.wait()
        return result

    def undo(self) -> None:
        delattr(self.store, self.name)


def bound_to(config: Any, user: str | None) -> Callable[..., bool]:
    def when(key: str, record: bytes, *_: Any) -> bool:
        decoded = users._decoded(config, key, record)
        return isinstance(decoded, Live) and decoded.user == user

    return when


async def test_a_revocation_cannot_unlist_a_login_that_follows_a_rotation(server_store: SessionStore) -> None:
    """A login (a) follows a rotation (b) of its session and binds in place, at the rotated key.
    "Log out everywhere" runs after (a) listed that key but before it wrote there: the key still
    holds the unbound session, so the revocation leaves it alone, but it unlists it. Then (a)'s
    write lands: a live session of ann that no index lists, which no revocation can ever end."""
    async with site(server_store) as s:
        browser = s.browser()
        await browser.start({"cart": 1})
        meeting = uuid.uuid4().hex
        gate = GATES[meeting] = Gate(["a", "b"])
        tasks = {
            "a": asyncio.create_task(browser.request("POST", f"/act/{meeting}/a", {"bind": "ann"})),
            "b": asyncio.create_task(browser.request("POST", f"/act/{meeting}/b", {"rotate": True})),
        }
        await asyncio.wait_for(gate.everyone_here.wait(), 10)
        gate.go["b"].set()
        browser.cookie = cookie_of(await tasks["b"])
        rotated = store_key(browser.cookie or "")
        pause = Pause(s.store, "set", lambda key, record, *_: key == rotated and bound_to(s.config, "ann")(key, record))
        try:
            gate.go["a"].set()
            await asyncio.wait_for(pause.paused.wait(), 10)
            await s.sessions.revoke_all("ann")
            pause.release.set()
            assert (await tasks["a"]).status_code == 200
        finally:
            pause.undo()
        live = await s.live_of("ann", browser)
        assert live <= await s.index_of("ann"), "a live session of ann is missing from her index"
        await s.sessions.revoke_all("ann")
        assert (await s.me(browser))["user"] is None, "log out everywhere left a session logged in"


async def test_a_listing_cannot_unlist_an_expired_session_a_request_in_flight_revives(
    server_store: SessionStore, harness: Harness, clock: FakeClock
) -> None:
    """A request loads a session just before its idle timeout (sliding the store's expiry); a
    listing then finds it dead by its content and unlists it, without a tombstone; the request's
    compare-and-set still matches and writes it back, live (seen now) and unlisted."""
    if not harness.injects_clock:
        pytest.skip("needs the store to follow the test's clock")
    async with site(server_store, expire_after_seconds=600) as s:
        browser = await s.login("ann")
        clock.advance(59)
        await browser.request("GET", "/read/x")  # slides the store's expiry, not stale yet
        clock.advance(599)  # seen 658 s ago: alive (600 + a touch interval of slack)
        gate, task = await held(s, browser, {"set": {"x": 1}})
        clock.advance(3)  # 661 s: dead by its content
        assert await s.sessions.list_sessions("ann") == []
        gate.go["a"].set()
        assert (await task).status_code == 200
        live = await s.live_of("ann", browser)
        assert live <= await s.index_of("ann"), "a live session of ann is missing from her index"
        await s.sessions.revoke_all("ann")
        assert (await s.me(browser))["user"] is None, "log out everywhere left a session logged in"


async def test_a_listing_does_not_log_out_a_login_that_writes_while_it_reads(server_store: SessionStore) -> None:
    """A login listed its key; a listing reads that key (nothing yet); the login writes and
    answers; then the listing 'tombstones the empty key' with revoke_key, which reads again, finds
    the new login and ends it: looking at the device page logs out a login on another device."""
    async with site(server_store) as s:
        await s.login("ann")
        writes = PausingWrites(s.store, s.config)
        try:
            login = asyncio.create_task(s.login("ann"))
            await asyncio.wait_for(writes.paused.wait(), 10)
            index = await s.index_of("ann")
            pending = {key for _, key in index if await s.store.get(key, None) is None}
            (key,) = pending
            reads = Pause(s.store, "get", lambda k, _: k == key, after=True)
            try:
                listing = asyncio.create_task(s.sessions.list_sessions("ann"))
                await asyncio.wait_for(reads.paused.wait(), 10)
                writes.release.set()
                browser = await login
                reads.release.set()
                await listing
            finally:
                reads.undo()
        finally:
            writes.undo()
        assert (await s.me(browser))["user"] == "ann", "a listing logged out a login that had succeeded"
        await s.assert_exact("ann", browser)


async def test_concurrent_logins_over_the_cap_do_not_revoke_each_other(
    server_store: SessionStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """max_sessions_per_user=1, two logins: both are written, then both enforce the cap on the
    same index. Each revokes every session but its own, the other login included: none is left."""
    real = users.enforce_cap
    arrived: list[object] = []
    both = asyncio.Event()

    async def together(*args: Any) -> None:
        arrived.append(args)
        if len(arrived) == 2:
            both.set()
        await asyncio.wait_for(both.wait(), 10)
        await real(*args)

    async with site(server_store, max_sessions_per_user=1) as s:
        await s.login("ann")
        monkeypatch.setattr(users, "enforce_cap", together)
        first, second = await asyncio.gather(s.login("ann"), s.login("ann"))
        monkeypatch.setattr(users, "enforce_cap", real)
        logged_in = [(await s.me(b))["user"] for b in (first, second)]
        assert logged_in.count("ann") == 1, f"two concurrent logins under a cap of 1 left {logged_in}"
        assert len(await s.assert_exact("ann", first, second)) == 1


def ended(config: Any, at: str) -> Callable[..., bool]:
    def when(key: str, record: bytes, *_: Any) -> bool:
        return key == at and isinstance(users._decoded(config, key, record), Ended)

    return when


async def test_an_unbind_that_ends_the_session_cannot_unlist_a_relogin_that_follows(server_store: SessionStore) -> None:
    """ann's session (nothing but the binding) at K0. (a) logs in as ann again (keeps the handle)
    and waits; (b) rotates K0 to K1; (c) on K1 unbinds: the session is left empty, so it ends (an
    Ended tombstone at K1), then K1 is unlisted. Between the two, (a) commits: it follows to K1
    and must find the end there, as a logout, rather than write ann's session at a key (c) is
    about to unlist (once, when the unbinding wrote the empty session in place, it did: ann was
    then logged in at K1 and no index listed it)."""
    async with site(server_store) as s:
        browser = await s.login("ann")
        gate, relogin = await held(s, browser, {"bind": "ann"})
        browser.cookie = cookie_of(await browser.request("POST", "/rotate"))
        pause = Pause(s.store, "set", ended(s.config, store_key(browser.cookie or "")), after=True)
        try:
            unbind = asyncio.create_task(browser.request("POST", f"/act/{await s._open_gate()}/solo", {"unbind": True}))
            await asyncio.wait_for(pause.paused.wait(), 10)
            gate.go["a"].set()
            assert (await relogin).status_code == 200
            pause.release.set()
            assert (await unbind).status_code == 200
        finally:
            pause.undo()
        assert (await s.me(browser))["user"] is None, "the unbinding ended the session: as a logout, it wins"
        live = await s.live_of("ann", browser)
        assert live <= await s.index_of("ann"), "a live session of ann is missing from her index"
        await s.sessions.revoke_all("ann")
        assert (await s.me(browser))["user"] is None, "log out everywhere left a session logged in"


async def test_a_revocation_racing_a_rotation_leaves_the_index_exact(server_store: SessionStore) -> None:
    """The revocation reads the index ([K0]), then the rotation lists K1, writes it and moves K0.
    The revocation follows K0 to K1 and ends it, but unlists only K0: a dead K1 stays listed."""
    async with site(server_store) as s:
        browser = await s.login("ann")
        gate, rotation = await held(s, browser, {"rotate": True})
        key = users.index_key("ann")
        pause = Pause(s.store, "get", lambda k, _: k == key, after=True)
        try:
            revocation = asyncio.create_task(s.sessions.revoke_all("ann"))
            await asyncio.wait_for(pause.paused.wait(), 10)
            gate.go["a"].set()
            response = await rotation
            pause.release.set()
            assert await revocation == 1
        finally:
            pause.undo()
        browser.cookie = cookie_of(response)
        assert (await s.me(browser))["user"] is None
        assert await s.assert_exact("ann", browser) == set()
