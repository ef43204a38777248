"""Every race of docs/concurrency.md, forced: the requests meet at a gate after acting on their
session, then commit in each order, on every server-side store.

Each scenario is a function that raises ``AssertionError`` when its outcome is violated; the
tests at the bottom remove one guard of the commit machinery at a time and check that the
scenario then fails, so that none of these tests can pass by accident.
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from litestar_flash_sessions import SessionBackend, SessionConfig, commit, draft, middleware
from litestar_flash_sessions.backend import EXPIRE, NOTHING
from litestar_flash_sessions.record import Ended, Live, Moved, decode, encode
from litestar_flash_sessions.stores import MemoryStore, SessionStore
from tests.app import GATES, Gate, build_app
from tests.conftest import in_loop_client
from tests.harness import FakeClock

ORDERS = ["a-first", "b-first"]


@dataclass
class Browser:
    """Talks to the app with one session cookie set by hand, and records what responses set."""

    client: httpx.AsyncClient
    name: str = "session"
    cookie: str | None = None
    statuses: list[int] = field(default_factory=list)

    async def request(self, method: str, url: str, actions: dict[str, Any] | None = None) -> httpx.Response:
        self.client.cookies.clear()
        headers = {} if self.cookie is None else {"cookie": f"{self.name}={self.cookie}"}
        response = await self.client.request(method, url, json=actions, headers=headers)
        self.statuses.append(response.status_code)
        return response

    async def live_id(self, session_id: str | None) -> str | None:
        """The id the session ``session_id`` opens as, ``None`` if it opens nothing."""
        saved, self.cookie = self.cookie, session_id
        try:
            return (await self.request("GET", "/id")).json()["id"]  # type: ignore[no-any-return]
        finally:
            self.cookie = saved

    async def start(self, values: dict[str, Any] | None = None, flashes: dict[str, Any] | None = None) -> str:
        """Create a session holding ``values`` and ``flashes``; it becomes this browser's cookie."""
        self.cookie = None
        if values:
            (response,) = [await self.request("POST", "/set", values)]
            self.cookie = cookie_of(response)
        if flashes:
            response = await self.request("POST", "/flash", flashes)
            self.cookie = cookie_of(response) or self.cookie
        assert self.cookie is not None
        return self.cookie

    async def values(self, session_id: str | None, *keys: str) -> dict[str, Any]:
        """The stored values of ``keys`` (read without consuming flashes: ``has`` and ``to_dict``)."""
        saved, self.cookie = self.cookie, session_id
        try:
            return {key: (await self.request("GET", f"/read/{key}")).json()["value"] for key in keys}
        finally:
            self.cookie = saved


def set_cookies(response: httpx.Response, name: str = "session") -> list[str]:
    return [value for value in response.headers.get_list("set-cookie") if value.startswith(f"{name}=")]


def cookie_of(response: httpx.Response) -> str | None:
    """The session cookie value the response sets, ``None`` if it sets none; fails on an expiry."""
    (header,) = set_cookies(response) or [None]
    if header is None:
        return None
    assert "Max-Age=0" not in header, f"the response expired the cookie: {header}"
    return header.split(";", 1)[0].split("=", 1)[1]


def expires_cookie(response: httpx.Response) -> bool:
    return any("Max-Age=0" in header for header in set_cookies(response))


@asynccontextmanager
async def browser(store: SessionBackend, **config: Any) -> AsyncIterator[Browser]:
    app = build_app(SessionConfig(store=store, **config))
    try:
        async with app.lifespan(), in_loop_client(app) as client:
            yield Browser(client)
    except BaseExceptionGroup as group:  # the lifespan's task group wraps a failed assertion
        failed = group.subgroup(AssertionError)
        if failed is None:
            raise
        raise failed.exceptions[0] from None


async def race(
    browser: Browser, requests: dict[str, tuple[str, dict[str, Any] | None]], order: list[str] | None = None
) -> dict[str, httpx.Response]:
    """Send the requests at once with the browser's cookie; each acts, then waits at the gate.

    ``requests`` maps a role to a method and the actions of ``act`` (GET: ``{"read": key}``).
    The roles then commit one after another in ``order``, or all at once without one.
    """
    meeting = uuid.uuid4().hex
    gate = GATES[meeting] = Gate(list(requests))
    tasks = {}
    for role, (method, actions) in requests.items():
        url = f"/act/{meeting}/{role}"
        if method == "GET":  # a GET reads the one key its actions name, from the query string
            read = actions["read"] if actions else ""
            tasks[role] = asyncio.create_task(browser.request(method, f"{url}?read={read}"))
        else:
            tasks[role] = asyncio.create_task(browser.request(method, url, actions))
    try:
        await asyncio.wait_for(gate.everyone_here.wait(), 10)
        if order is None:
            for event in gate.go.values():
                event.set()
            return {role: await task for role, task in tasks.items()}
        responses = {}
        for role in order:
            gate.go[role].set()
            responses[role] = await tasks[role]
        return responses
    finally:
        del GATES[meeting]
        for task in tasks.values():
            task.cancel()


def live_records(store: MemoryStore) -> int:
    return sum(isinstance(decode(entry[0]), Live) for entry in store._records.values())


def in_order(order: str) -> list[str]:
    return ["a", "b"] if order == "a-first" else ["b", "a"]


# --- the scenarios ----------------------------------------------------------------------------


async def distinct_writers(store: SessionBackend, writers: int) -> None:
    """K requests set distinct keys: every key kept, and no 503."""
    async with browser(store) as client:
        session_id = await client.start({"seed": 1})
        requests = {f"w{i}": ("POST", {"set": {f"k{i}": i}}) for i in range(writers)}
        responses = await race(client, requests)
        assert sorted(response.status_code for response in responses.values()) == [200] * writers
        kept = await client.values(session_id, *(f"k{i}" for i in range(writers)), "seed")
        assert kept == {**{f"k{i}": i for i in range(writers)}, "seed": 1}, "a concurrent write was lost"


def shown_once(responses: dict[str, httpx.Response], key: str) -> list[httpx.Response]:
    """Assert that exactly one of ``responses`` showed the flash ``key`` ("hello"); return it, in a list."""
    shown = [r for r in responses.values() if r.status_code == 200 and r.json()["read"][key] == "hello"]
    assert len(shown) == 1, f"the flash was shown {len(shown)} times"
    return shown


async def lone_flash_readers(store: SessionBackend, readers: int, method: str) -> None:
    """N requests read a session's only content, a flash: shown by one, the others retry."""
    async with browser(store) as client:
        await client.start(flashes={"message": "hello"})
        actions = {"read": "message"} if method == "GET" else {"read": ["message"]}
        responses = await race(client, {f"r{i}": (method, actions) for i in range(readers)})
        shown = shown_once(responses, "message")
        retry = 303 if method == "GET" else 409
        others = sorted(r.status_code for r in responses.values() if r not in shown)
        assert others == [retry] * (readers - 1)
        assert not any(expires_cookie(r) for r in responses.values())


async def emptying_against_a_write(store: SessionBackend, order: list[str]) -> None:
    """A consumes the last flash (emptying the session) while B sets a key."""
    async with browser(store) as client:
        session_id = await client.start(flashes={"m": "last"})
        responses = await race(client, {"a": ("POST", {"read": ["m"]}), "b": ("POST", {"set": {"k": "b"}})}, order)
        assert responses["a"].json()["read"] == {"m": "last"}
        assert not any(expires_cookie(r) or set_cookies(r) for r in responses.values()), "no cookie changes"
        assert await client.live_id(session_id) == session_id, "the session was deleted"
        assert await client.values(session_id, "k") == {"k": "b"}, "B's key was lost"


async def read_of_an_emptied_session_against_a_write(store: SessionBackend, order: list[str]) -> None:
    """A only reads a session emptied before (a read writes it again, to keep its expiry short)
    while B sets a key: the key stays."""
    async with browser(store) as client:
        session_id = await client.start(flashes={"m": "last"})
        assert await client.values(session_id, "m") == {"m": "last"}  # consumed: the session is empty
        if isinstance(store._clock, FakeClock):
            store._clock.advance(1)  # later: A's read writes a newer seen_at (else the same bytes: no write)
        responses = await race(client, {"a": ("POST", {"read": ["x"]}), "b": ("POST", {"set": {"k": "b"}})}, order)
        assert [r.status_code for r in responses.values()] == [200, 200]
        assert await client.live_id(session_id) == session_id, "the session was deleted"
        assert await client.values(session_id, "k") == {"k": "b"}, "B's key was lost"


async def newer_flash_of_the_same_key(store: SessionBackend, order: list[str]) -> None:
    """A consumes flash m=v1 while B flashes m=v2: v2 stays pending."""
    async with browser(store) as client:
        session_id = await client.start({"keep": 1}, flashes={"m": "v1"})
        responses = await race(client, {"a": ("POST", {"read": ["m"]}), "b": ("POST", {"flash": {"m": "v2"}})}, order)
        assert responses["a"].json()["read"] == {"m": "v1"}
        assert await client.values(session_id, "m") == {"m": "v2"}, "the newer flash was dropped"


async def rotation_against_a_write(store: SessionBackend, order: list[str]) -> None:
    """A rotates (a login) while B sets a key: B's key lands on the new id."""
    async with browser(store) as client:
        old = await client.start({"user": "ann"})
        responses = await race(client, {"a": ("POST", {"rotate": True}), "b": ("POST", {"set": {"k": "b"}})}, order)
        assert [r.status_code for r in responses.values()] == [200, 200]
        new = cookie_of(responses["a"])
        assert new is not None
        assert new != old
        assert set_cookies(responses["b"]) == [], "B's response must neither expire nor set the cookie"
        assert await client.live_id(old) is None, "the old id still opens a session"
        assert await client.values(new, "user", "k") == {"user": "ann", "k": "b"}, "B's write was lost"
        assert new not in responses["b"].text


async def rotation_against_a_logout(store: SessionBackend, order: list[str]) -> None:
    """A rotates while B logs out: no live id afterwards, whichever response the browser keeps."""
    async with browser(store) as client:
        old = await client.start({"user": "ann"})
        responses = await race(client, {"a": ("POST", {"rotate": True}), "b": ("POST", {"logout": True})}, order)
        assert expires_cookie(responses["b"])
        sent = {header.split(";")[0].split("=", 1)[1] for r in responses.values() for header in set_cookies(r)}
        for session_id in ({old} | sent) - {""}:
            assert await client.live_id(session_id) is None, "a session outlived the logout"
        if isinstance(store, MemoryStore):  # the one store whose records can be listed: no orphan either
            assert live_records(store) == 0, "a rotation left a session under an id nobody knows"


async def two_rotations(store: SessionBackend, order: list[str]) -> None:
    """A and B both rotate: exactly one live id, and no response sets a dead one."""
    async with browser(store) as client:
        old = await client.start({"user": "ann"})
        responses = await race(client, {"a": ("POST", {"rotate": True}), "b": ("POST", {"rotate": True})}, order)
        sent = [cookie_of(r) for r in responses.values()]
        assert await client.live_id(old) is None
        live = [value for value in sent if value is not None and await client.live_id(value) == value]
        assert len(live) == 1, f"live ids afterwards: {len(live)}"
        assert all(value in live for value in sent if value is not None), "a response set a dead id"
        assert await client.values(live[0], "user") == {"user": "ann"}


async def logout_against_a_write(store: SessionBackend, order: list[str]) -> None:
    """A logs out while B writes: the logout wins."""
    async with browser(store) as client:
        old = await client.start({"user": "ann"})
        responses = await race(client, {"a": ("POST", {"logout": True}), "b": ("POST", {"set": {"k": "b"}})}, order)
        assert expires_cookie(responses["a"])
        assert await client.live_id(old) is None, "the write brought the session back"
        assert not [h for r in responses.values() for h in set_cookies(r) if "Max-Age=0" not in h], "a cookie set"


async def rotating_flash_read_against_a_flash_read(store: SessionBackend, order: list[str]) -> None:
    """A reads the flash and rotates (a login page) while B reads it: shown once, the id rotated,
    and the response that carries the new id, a retry perhaps, is one no cache may store."""
    async with browser(store) as client:
        old = await client.start({"user": "ann"}, flashes={"m": "hello"})
        requests = {"a": ("POST", {"read": ["m"], "rotate": True}), "b": ("POST", {"read": ["m"]})}
        responses = await race(client, requests, order)
        shown_once(responses, "m")
        new = cookie_of(responses["a"])
        assert new is not None, "the rotation's response, retry or not, carries the new id"
        assert await client.live_id(old) is None
        assert await client.values(new, "user") == {"user": "ann"}
        assert set_cookies(responses["b"]) == []
        assert "no-store" in responses["a"].headers.get("cache-control", ""), "the new id may be cached"


async def emptying_rotation_against_a_write(store: SessionBackend, order: list[str]) -> None:
    """A drops the session's only value and rotates (a logout to anonymous) while B sets a key:
    the old id dies either way, and the dropped value never comes back."""
    async with browser(store) as client:
        old = await client.start({"user": "ann"})
        requests = {"a": ("POST", {"set": {"user": None}, "rotate": True}), "b": ("POST", {"set": {"k": "b"}})}
        responses = await race(client, requests, order)
        assert await client.live_id(old) is None, "the old id outlived its rotation"
        sent = {r for r in responses.values() if not expires_cookie(r)}
        for session_id in {cookie_of(r) for r in sent} - {None}:
            assert await client.values(session_id, "user") == {"user": None}, "the dropped value came back"


async def flash_read_by_a_logout_against_a_flash_read(store: SessionBackend, order: list[str]) -> None:
    """A shows the flash and logs out while B shows it: shown once, the other answered with the
    retry, and the logout stands."""
    async with browser(store) as client:
        old = await client.start({"user": "ann"}, flashes={"m": "hello"})
        requests = {"a": ("POST", {"read": ["m"], "logout": True}), "b": ("POST", {"read": ["m"]})}
        responses = await race(client, requests, order)
        shown_once(responses, "m")
        assert sorted(r.status_code for r in responses.values()) == [200, 409]
        assert await client.live_id(old) is None, "the logout was lost"


async def flash_read_by_a_relogin_against_a_flash_read(store: SessionBackend, order: list[str]) -> None:
    """A shows the flash, logs out and in again (a fresh session) while B shows it: shown once,
    and A's login lives on in its fresh session, retry or not."""
    async with browser(store) as client:
        old = await client.start({"user": "ann"}, flashes={"m": "hello"})
        requests = {"a": ("POST", {"read": ["m"], "relogin": True}), "b": ("POST", {"read": ["m"]})}
        responses = await race(client, requests, order)
        shown_once(responses, "m")
        fresh = cookie_of(responses["a"])
        assert fresh is not None, "the login was lost"
        assert await client.values(fresh, "user") == {"user": "ann"}
        assert await client.live_id(old) is None, "the logout was lost"


async def a_retry_keeps_what_it_showed(store: SessionBackend, order: list[str]) -> None:
    """A shows flash m while B shows m and o, and flashes n and shows it too (flash, then render):
    m is shown once, and the request that becomes the retry displayed nothing, so what else it
    showed stays pending for the page the retry leads to."""
    async with browser(store) as client:
        session_id = await client.start({"user": "ann"}, flashes={"m": "hello", "o": "other"})
        b_actions = {"read": ["m", "o"], "flash": {"n": "own"}, "read_after": ["n"]}
        responses = await race(client, {"a": ("POST", {"read": ["m"]}), "b": ("POST", b_actions)}, order)
        shown_once(responses, "m")
        b_retried = responses["b"].status_code == 409
        expected = {"o": "other", "n": "own"} if b_retried else {"o": None, "n": None}
        assert await client.values(session_id, "o", "n") == expected, "what the retry showed was lost"


async def a_logout_retry_keeps_what_it_flashed_and_showed(store: SessionBackend, order: list[str]) -> None:
    """A shows flash m, logs out, flashes "see you" and shows it (its page); B shows m: when A
    becomes the retry, its page was never displayed, so "see you" waits in the fresh session."""
    async with browser(store) as client:
        old = await client.start({"user": "ann"}, flashes={"m": "hello"})
        a_actions = {"read": ["m"], "logout": True, "then_flash": {"bye": "see you"}}
        responses = await race(client, {"a": ("POST", a_actions), "b": ("POST", {"read": ["m"]})}, order)
        shown_once(responses, "m")
        assert await client.live_id(old) is None, "the logout was lost"
        if responses["a"].status_code == 409:
            fresh = cookie_of(responses["a"])
            assert fresh is not None, "what the retry flashed and never displayed was lost"
            assert await client.values(fresh, "bye") == {"bye": "see you"}
        else:
            assert expires_cookie(responses["a"]), "shown on the logout's page: nothing left for a fresh session"


PAIRS: list[Callable[[SessionBackend, list[str]], Awaitable[None]]] = [
    emptying_against_a_write,
    read_of_an_emptied_session_against_a_write,
    newer_flash_of_the_same_key,
    rotation_against_a_write,
    rotation_against_a_logout,
    two_rotations,
    logout_against_a_write,
    rotating_flash_read_against_a_flash_read,
    emptying_rotation_against_a_write,
    flash_read_by_a_logout_against_a_flash_read,
    flash_read_by_a_relogin_against_a_flash_read,
    a_retry_keeps_what_it_showed,
    a_logout_retry_keeps_what_it_flashed_and_showed,
]


# --- on every server-side store -----------------------------------------------------------------


@pytest.mark.parametrize("writers", [2, 7, 50])
async def test_distinct_writers_all_keep_their_key(server_store: SessionStore, writers: int) -> None:
    await distinct_writers(server_store, writers)


@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_a_lone_flash_read_by_five_is_shown_once(server_store: SessionStore, method: str) -> None:
    await lone_flash_readers(server_store, 5, method)


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("scenario", PAIRS, ids=lambda scenario: scenario.__name__)
async def test_two_requests_in_each_order(
    server_store: SessionStore, scenario: Callable[[SessionBackend, list[str]], Awaitable[None]], order: str
) -> None:
    await scenario(server_store, in_order(order))


# --- each guard, removed: the scenario it protects must fail -----------------------------------


class YieldingStore(MemoryStore):
    """A memory store whose calls let other tasks run first, as a round trip to a server does."""

    async def get(self, session_id: str, expires_in: int | None) -> bytes | None:
        await asyncio.sleep(0)
        return await super().get(session_id, expires_in)

    async def set(self, session_id: str, record: bytes, expires_in: int | None, previous: bytes | None) -> bool:
        await asyncio.sleep(0)
        return await super().set(session_id, record, expires_in, previous)


class BlindStore(YieldingStore):
    """A store whose ``set`` overwrites whatever is stored: no compare."""

    async def set(self, session_id: str, record: bytes, expires_in: int | None, previous: bytes | None) -> bool:
        return await super().set(session_id, record, expires_in, await MemoryStore.get(self, session_id, None))


def patch_decide(monkeypatch: pytest.MonkeyPatch, wrapper: Callable[..., commit.Plan]) -> None:
    real = commit.decide
    monkeypatch.setattr(commit, "decide", lambda *args, **kwargs: wrapper(real, *args, **kwargs))


def without_compare_and_set(monkeypatch: pytest.MonkeyPatch) -> SessionBackend:
    return BlindStore(clock=FakeClock())


def without_replay(monkeypatch: pytest.MonkeyPatch) -> SessionBackend:
    """After a conflict, write the request's own view: what the other request wrote is lost."""
    monkeypatch.setattr(commit, "replay", lambda draft_, current, now: (draft_.content(now), False))
    return YieldingStore(clock=FakeClock())


def without_redelivery_check(monkeypatch: pytest.MonkeyPatch) -> SessionBackend:
    real = commit.replay
    monkeypatch.setattr(commit, "replay", lambda draft_, current, now: (real(draft_, current, now)[0], False))
    return YieldingStore(clock=FakeClock())


def dropping_what_a_retry_showed(monkeypatch: pytest.MonkeyPatch) -> SessionBackend:
    """A retry's replay drops the flashes it showed, as if its page had been displayed."""
    real_replay, real_redelivered = commit.replay, draft.redelivered

    def replay(draft_: draft.Draft, current: Live, now: float) -> tuple[Live, bool]:
        shown_elsewhere = real_redelivered(draft_, current)
        with monkeypatch.context() as patched:
            patched.setattr(draft, "redelivered", lambda *_: False)
            return real_replay(draft_, current, now)[0], shown_elsewhere

    monkeypatch.setattr(commit, "replay", replay)
    return YieldingStore(clock=FakeClock())


def dropping_what_a_logout_retry_showed(monkeypatch: pytest.MonkeyPatch) -> SessionBackend:
    """A logout that becomes a retry keeps only what is still pending for the fresh session."""
    real = draft.Draft.survivors
    monkeypatch.setattr(
        draft.Draft, "survivors", lambda self, now, **options: real(self, now, **{**options, "retrying": False})
    )
    return YieldingStore(clock=FakeClock())


def without_logout_winning(monkeypatch: pytest.MonkeyPatch) -> SessionBackend:
    """A commit that finds the session gone writes it again, as the request saw it."""
    patch_decide(
        monkeypatch,
        lambda real, draft_, current, *args, **kwargs: real(
            draft_, current if isinstance(current, Live) else draft_.content(kwargs["now"]), *args, **kwargs
        ),
    )
    return YieldingStore(clock=FakeClock())


def without_following(monkeypatch: pytest.MonkeyPatch) -> SessionBackend:
    """A commit that finds the session rotated away treats it as gone."""
    real = commit.read_record

    async def read_record(*args: Any) -> Any:
        raw, plain, found = await real(*args)
        return (raw, plain, None) if isinstance(found, Moved) else (raw, plain, found)

    monkeypatch.setattr(commit, "read_record", read_record)
    return YieldingStore(clock=FakeClock())


def rotating_again_after_following(monkeypatch: pytest.MonkeyPatch) -> SessionBackend:
    patch_decide(monkeypatch, lambda real, *args, **kwargs: real(*args, **{**kwargs, "followed": False}))
    return YieldingStore(clock=FakeClock())


def deleting_an_emptied_session(monkeypatch: pytest.MonkeyPatch) -> SessionBackend:
    """The old way: an emptied session is deleted and its cookie expired."""

    def decide(real: Callable[..., commit.Plan], draft_: draft.Draft, *args: Any, **kwargs: Any) -> commit.Plan:
        plan = real(draft_, *args, **kwargs)
        if plan.record is not None and not draft_.delete and not decode(plan.record).data:  # type: ignore[union-attr]
            return commit.Plan(encode(Ended()), plan.ttl, EXPIRE)
        return plan

    patch_decide(monkeypatch, decide)
    return YieldingStore(clock=FakeClock())


def keeping_an_unpublished_rotation(monkeypatch: pytest.MonkeyPatch) -> SessionBackend:
    async def keep(store: SessionStore, rotated: Any) -> None:
        pass

    monkeypatch.setattr(commit, "_drop_unused", keep)
    return YieldingStore(clock=FakeClock())


def keeping_the_id_of_an_emptied_rotation(monkeypatch: pytest.MonkeyPatch) -> SessionBackend:
    """The old way: a rotation of a session left empty keeps its id, with the emptied record."""

    def decide(real: Callable[..., commit.Plan], draft_: draft.Draft, *args: Any, **kwargs: Any) -> commit.Plan:
        plan = real(draft_, *args, **kwargs)
        if plan.outcome.expire and draft_.rotate and not draft_.delete:
            content = draft_.content(kwargs["now"])
            return commit.Plan(encode(content), 60, NOTHING, False, content)
        return plan

    patch_decide(monkeypatch, decide)
    return YieldingStore(clock=FakeClock())


def without_the_flashes_an_ending_showed(monkeypatch: pytest.MonkeyPatch) -> SessionBackend:
    """An ending neither records the flashes it showed nor checks for one shown before it."""
    monkeypatch.setattr(commit, "delivered_ids", lambda draft_: [])
    monkeypatch.setattr(commit, "redelivered", lambda draft_, current: False)
    return YieldingStore(clock=FakeClock())


def without_uncacheable_cookies(monkeypatch: pytest.MonkeyPatch) -> SessionBackend:
    """Responses that set the cookie keep the handler's caching headers (none)."""
    monkeypatch.setattr(middleware, "_uncacheable", list)
    return YieldingStore(clock=FakeClock())


BROKEN_BY: dict[Callable[[pytest.MonkeyPatch], SessionBackend], list[Callable[..., Awaitable[None]]]] = {
    without_compare_and_set: [
        emptying_against_a_write,
        read_of_an_emptied_session_against_a_write,
        newer_flash_of_the_same_key,
        rotation_against_a_write,
    ],
    without_replay: [emptying_against_a_write, newer_flash_of_the_same_key, rotation_against_a_write],
    without_logout_winning: [logout_against_a_write, rotation_against_a_logout],
    without_following: [rotation_against_a_write, rotation_against_a_logout],
    rotating_again_after_following: [two_rotations],
    deleting_an_emptied_session: [emptying_against_a_write],
    keeping_an_unpublished_rotation: [rotation_against_a_logout],
    without_redelivery_check: [rotating_flash_read_against_a_flash_read],
    dropping_what_a_retry_showed: [a_retry_keeps_what_it_showed],
    dropping_what_a_logout_retry_showed: [a_logout_retry_keeps_what_it_flashed_and_showed],
    without_uncacheable_cookies: [rotating_flash_read_against_a_flash_read],
    keeping_the_id_of_an_emptied_rotation: [emptying_rotation_against_a_write],
    without_the_flashes_an_ending_showed: [
        flash_read_by_a_logout_against_a_flash_read,
        flash_read_by_a_relogin_against_a_flash_read,
    ],
}


@pytest.mark.parametrize(
    ("remove_guard", "scenario"),
    [(remove, scenario) for remove, scenarios in BROKEN_BY.items() for scenario in scenarios],
    ids=lambda value: value.__name__,
)
async def test_a_race_test_fails_without_its_guard(
    monkeypatch: pytest.MonkeyPatch,
    remove_guard: Callable[[pytest.MonkeyPatch], SessionBackend],
    scenario: Callable[[SessionBackend, list[str]], Awaitable[None]],
) -> None:
    store = remove_guard(monkeypatch)
    failures = 0
    for order in ORDERS:
        try:
            await scenario(store, in_order(order))
        except AssertionError:
            failures += 1
    assert failures, f"{scenario.__name__} passed in both orders with {remove_guard.__name__}"


async def test_the_guards_hold_on_the_test_stores() -> None:
    """The stores the guard tests use pass every scenario with the guards in place."""
    for scenario, order in itertools.product(PAIRS, ORDERS):
        await scenario(YieldingStore(clock=FakeClock()), in_order(order))
    await lone_flash_readers(YieldingStore(clock=FakeClock()), 5, "GET")
    await distinct_writers(YieldingStore(clock=FakeClock()), 50)


@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_lone_flash_readers_fail_without_the_redelivery_check(
    monkeypatch: pytest.MonkeyPatch, method: str
) -> None:
    with pytest.raises(AssertionError, match="the flash was shown 5 times"):
        await lone_flash_readers(without_redelivery_check(monkeypatch), 5, method)


async def conflicts_of(store: MemoryStore, writers: int) -> int:
    """How many compare-and-sets fail while ``writers`` requests set distinct keys at once."""
    failed = 0
    real = store.set

    async def counting(session_id: str, record: bytes, expires_in: int | None, previous: bytes | None) -> bool:
        nonlocal failed
        written = await real(session_id, record, expires_in, previous)
        failed += not written
        return written

    store.set = counting  # type: ignore[method-assign]
    await distinct_writers(store, writers)
    return failed


async def test_writers_of_one_process_wait_for_each_other(monkeypatch: pytest.MonkeyPatch) -> None:
    """With the per-session lock, each of 50 writers wins at its first or second compare-and-set
    (it learns what the one before it wrote); without it they fight."""
    assert await conflicts_of(YieldingStore(clock=FakeClock()), 50) <= 1

    class NoLocks:
        def take(self, key: str) -> None:
            return None  # never free at once: every commit goes through acquire()

        async def acquire(self, key: str) -> Any:
            return SimpleNamespace(last=None)

        def release(self, key: str, entry: Any) -> None:
            pass

    monkeypatch.setattr(SessionStore, "locks", NoLocks())
    assert await conflicts_of(YieldingStore(clock=FakeClock()), 50) > 100
