"""The commit machinery branch by branch: the decision table, the loop against a store that
conflicts, fails or is slow, and the flash-retry answer."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from litestar import Litestar
from litestar.types import Receive, Scope, Send

from litestar_flash_sessions import SessionConfig, StoreUnavailableError, commit
from litestar_flash_sessions.backend import EXPIRE, NOTHING, Loaded, Outcome
from litestar_flash_sessions.draft import Draft
from litestar_flash_sessions.middleware import retry_location
from litestar_flash_sessions.record import TOMBSTONE_SECONDS, Ended, Flash, Live, Moved, decode, encode
from litestar_flash_sessions.stores import MemoryStore
from tests.app import build_app
from tests.conftest import in_loop_client
from tests.harness import FakeClock
from tests.test_races import Browser, race

SID = "s" * 43
KEY = commit.store_key(SID)


NOW = 1_800_000_000.0


def decide(draft: Draft, current: Any, plain: bytes | None, *, followed: bool, ttl: int | None) -> commit.Plan:
    config = SessionConfig(expire_after_seconds=ttl)
    return commit.decide(draft, current, plain, followed=followed, config=config, now=NOW)


def content_of(record: bytes | None) -> tuple[Any, Any, int]:
    """The data, flashes and next flash id of an encoded record (its times aside)."""
    live = decode(record or b"")
    assert isinstance(live, Live)
    return live.data, live.flashes, live.next_flash_id


def draft_of(content: Live, **changes: Any) -> Draft:
    draft = Draft.of(
        Live(dict(content.data), list(content.flashes), content.next_flash_id, content.created_at, content.seen_at)
    )
    for key, value in changes.pop("set", {}).items():
        draft.data[key] = value
        draft.written[key] = value
    for name, value in changes.items():
        setattr(draft, name, value)
    return draft


# --- decide(): the table ----------------------------------------------------------------------

LOADED = Live({"user": "ann"}, [Flash(0, "m", "hello")], 1, NOW - 100, NOW - 10)


def test_a_session_gone_meanwhile_writes_nothing_and_expires_the_cookie() -> None:
    draft = draft_of(LOADED, set={"k": 1})
    for gone in (None, Ended()):
        plan = decide(draft, gone, None, followed=False, ttl=60)
        assert plan == commit.Plan(None, None, EXPIRE)


def test_a_logout_leaves_a_tombstone_and_expires_the_cookie() -> None:
    plan = decide(draft_of(LOADED, delete=True), commit.AS_LOADED, b"", followed=False, ttl=60)
    assert plan.record is not None
    assert decode(plan.record) == Ended()
    assert plan.outcome == EXPIRE
    assert plan.ttl == 60


def test_a_rotation_moves_and_a_followed_one_does_not_rotate_again() -> None:
    draft = draft_of(LOADED, rotate=True)
    plan = decide(draft, commit.AS_LOADED, b"", followed=False, ttl=None)
    assert plan.move
    moved = decode(plan.record or b"")
    assert isinstance(moved, Live)
    assert (moved.data, moved.flashes, moved.created_at) == (LOADED.data, LOADED.flashes, LOADED.created_at)
    there = Live({"user": "ann", "x": 1}, [], 1, NOW - 100, NOW)
    followed = decide(draft, there, encode(there), followed=True, ttl=None)
    assert not followed.move
    assert followed.record is None, "the followed session already holds this content"
    assert followed.outcome == NOTHING, "no cookie to a holder of the old id"


def test_an_emptied_session_keeps_a_short_lived_record_and_its_cookie() -> None:
    draft = draft_of(Live({}, [Flash(0, "m", "hello")], 1, NOW - 100, NOW - 10), consumed={0: True})
    draft.flashes.clear()
    plan = decide(draft, commit.AS_LOADED, b"", followed=False, ttl=10**6)
    assert content_of(plan.record) == ({}, [], 1)
    assert plan.ttl == TOMBSTONE_SECONDS
    assert plan.outcome == NOTHING


def test_replay_keeps_the_newer_content_and_detects_a_redelivered_flash() -> None:
    draft = draft_of(LOADED, set={"k": "mine"}, consumed={0: True})
    draft.flashes.clear()
    newer = Live({"user": "ann", "other": 2}, [Flash(1, "m", "newer")], 2, NOW - 100, NOW - 5)  # 0 consumed elsewhere
    plan = decide(draft, newer, encode(newer), followed=False, ttl=None)
    assert content_of(plan.record) == ({"user": "ann", "other": 2, "k": "mine"}, [Flash(1, "m", "newer")], 2)
    assert plan.outcome == Outcome(retry_flash=True)


def test_a_replay_that_changes_nothing_writes_nothing() -> None:
    draft = draft_of(LOADED, consumed={0: True})
    draft.flashes.clear()
    newer = Live({"user": "ann"}, [], 1, NOW - 100, NOW)
    assert decide(draft, newer, encode(newer), followed=False, ttl=None) == commit.Plan(
        None, None, Outcome(retry_flash=True)
    )


# --- commit(): the loop against a store --------------------------------------------------------


class ScriptedStore(MemoryStore):
    """A memory store that can lose every compare-and-set, or change the record before one."""

    def __init__(self, *, always_conflict: bool = False) -> None:
        super().__init__(clock=FakeClock(NOW))
        self.always_conflict = always_conflict
        self.before_set: list[tuple[str, bytes]] = []  # writes another "process" makes first
        self.calls: list[str] = []

    async def get(self, session_id: str, expires_in: int | None) -> bytes | None:
        self.calls.append("get")
        return await super().get(session_id, expires_in)

    async def set(self, session_id: str, record: bytes, expires_in: int | None, previous: bytes | None) -> bool:
        self.calls.append("set")
        while self.before_set:
            other_id, other = self.before_set.pop(0)
            self._records[other_id] = (other, None)
        if self.always_conflict:
            return False
        return await super().set(session_id, record, expires_in, previous)


async def loaded_from(store: MemoryStore, content: Live) -> Loaded:
    await MemoryStore.set(store, KEY, encode(content), None, None)
    loaded = await store.load(SID, SessionConfig(store=store))
    assert loaded.key == KEY
    return loaded


async def test_a_conflict_is_read_replayed_and_written() -> None:
    store = ScriptedStore()
    loaded = await loaded_from(store, LOADED)
    loaded.session.set("k", "mine")
    store.before_set.append((KEY, encode(Live({"user": "ann", "other": 2}, [], 1, NOW - 100, NOW - 5))))
    store.calls.clear()
    assert await store.commit(loaded, SessionConfig(store=store)) == NOTHING
    assert store.calls == ["set", "get", "set"]
    assert content_of(await MemoryStore.get(store, KEY, None)) == ({"user": "ann", "other": 2, "k": "mine"}, [], 1)


async def test_a_logout_committed_meanwhile_wins_and_nothing_is_written() -> None:
    store = ScriptedStore()
    loaded = await loaded_from(store, LOADED)
    loaded.session.set("k", "mine")
    store.before_set.append((KEY, encode(Ended())))
    assert await store.commit(loaded, SessionConfig(store=store)) == EXPIRE
    assert decode(await MemoryStore.get(store, KEY, None) or b"") == Ended()


async def test_a_write_follows_a_rotation_committed_meanwhile() -> None:
    store = ScriptedStore()
    loaded = await loaded_from(store, LOADED)
    loaded.session.set("k", "mine")
    new = commit.store_key("n" * 43)
    await MemoryStore.set(store, new, encode(LOADED), None, None)
    store.before_set.append((KEY, encode(Moved(new))))
    assert await store.commit(loaded, SessionConfig(store=store)) == NOTHING, "no cookie: it would reveal the new id"
    assert decode(await MemoryStore.get(store, new, None) or b"").data == {"user": "ann", "k": "mine"}  # type: ignore[union-attr]


async def test_endless_conflicts_give_up_with_nothing_written() -> None:
    store = ScriptedStore(always_conflict=True)
    loaded = await loaded_from(store, LOADED)
    loaded.session.set("k", "mine")
    with pytest.raises(StoreUnavailableError, match="kept changing"):
        await store.commit(loaded, SessionConfig(store=store))
    assert store.calls.count("set") == commit.MAX_ATTEMPTS
    assert await MemoryStore.get(store, KEY, None) == encode(LOADED)


class SlowStore(MemoryStore):
    """A memory store whose reads and writes each take ``delay`` seconds, with a time-out."""

    def __init__(self, timeout: float, delay: float) -> None:
        super().__init__(clock=FakeClock())
        self._timeout = timeout
        self.delay = delay

    async def get(self, session_id: str, expires_in: int | None) -> bytes | None:
        await asyncio.sleep(self.delay)
        return await super().get(session_id, expires_in)

    async def set(self, session_id: str, record: bytes, expires_in: int | None, previous: bytes | None) -> bool:
        await asyncio.sleep(self.delay)
        return await super().set(session_id, record, expires_in, previous)


async def test_all_store_calls_of_a_request_share_one_time_out() -> None:
    """Each call alone fits the time-out, a read and a write together do not: 503, nothing written."""
    store = SlowStore(timeout=0.3, delay=0.0)
    app = build_app(SessionConfig(store=store))
    async with app.lifespan(), in_loop_client(app) as client:
        assert (await client.post("/set", json={"user": "ann"})).status_code == 200
        store.delay = 0.2
        assert (await client.get("/read/user")).status_code == 200, "one call: within the time-out"
        response = await client.post("/set", json={"user": "bob"})
        assert response.status_code == 503
        store.delay = 0.0
        assert (await client.get("/read/user")).json()["value"] == "ann", "nothing was written"


# --- the flash retry ---------------------------------------------------------------------------


def scope(path: str, raw_path: bytes | None = None, query: bytes = b"", root_path: str = "") -> Any:
    result: dict[str, Any] = {"type": "http", "path": path, "query_string": query, "root_path": root_path}
    if raw_path is not None:
        result["raw_path"] = raw_path
    return result


@pytest.mark.parametrize(
    ("request_scope", "location"),
    [
        (scope("/a/b", b"/a/b", b"x=1&y=%20"), b"/a/b?x=1&y=%20"),
        (scope("//evil.example/x", b"//evil.example/x"), b"/evil.example/x"),
        (scope("/\\evil.example/x", b"/\\evil.example/x"), b"/evil.example/x"),
        (scope("/\\/\\evil.example", b"/\\/\\evil.example"), b"/evil.example"),
        (scope("/a\r\nSet-Cookie: x=1", b"/a\r\nSet-Cookie: x=1", b"q=\r\n"), b"/a%0D%0ASet-Cookie:%20x=1?q=%0D%0A"),
        (scope("/caf\u00e9 x"), b"/caf%C3%A9%20x"),
        (scope("//evil.example/x"), b"/evil.example/x"),
        (scope("/x\udcff"), b"/x%FF"),  # a path decoded from bytes that are not UTF-8
        (scope("/app/show", b"/show", b"x=1", "/app"), b"/app/show?x=1"),  # a proxy cut the root path off
        (scope("/app/show", b"/app/show", root_path="/app"), b"/app/show"),  # a mounted app: the raw path has it
        (scope("/application", b"/application", root_path="/app"), b"/app/application"),
    ],
)
def test_the_retry_location_is_a_same_origin_path(request_scope: Any, location: bytes) -> None:
    assert retry_location(request_scope) == location


def without_raw_path(app: Litestar) -> Any:
    async def asgi(scope: Scope, receive: Receive, send: Send) -> None:
        scope.pop("raw_path", None)  # type: ignore[misc]
        await app(scope, receive, send)

    return asgi


async def test_the_retry_works_without_raw_path_in_the_scope() -> None:
    store = MemoryStore(clock=FakeClock())
    app = build_app(SessionConfig(store=store))
    transport = httpx.ASGITransport(app=without_raw_path(app))
    async with app.lifespan(), httpx.AsyncClient(transport=transport, base_url="http://testserver.local") as client:
        browser = Browser(client)
        await browser.start(flashes={"message": "hello"})
        await lone_flash_readers_with(browser)


async def lone_flash_readers_with(browser: Browser) -> None:
    responses = await race(browser, {f"r{i}": ("GET", {"read": "message"}) for i in range(3)})
    retries = [r for r in responses.values() if r.status_code == 303]
    assert len(retries) == 2
    assert all(r.headers["location"].startswith("/act/") for r in retries)


async def test_session_locks_take_turns_in_order_and_survive_cancelled_waiters() -> None:
    """One holder at a time, first come first served; a waiter cancelled before its turn, or as
    the lock is handed to it, passes its turn on; no entry is left once everyone is done."""
    locks = commit.SessionLocks()
    holding, order = 0, []

    async def hold(name: int) -> None:
        nonlocal holding
        entry = await locks.acquire("key")
        try:
            holding += 1
            assert holding == 1
            order.append(name)
            await asyncio.sleep(0.001)
        finally:
            holding -= 1
            locks.release("key", entry)

    tasks = [asyncio.create_task(hold(name)) for name in range(6)]
    await asyncio.sleep(0)
    tasks[2].cancel()  # waiting for its turn
    await asyncio.sleep(0.0015)  # 0 has released and handed the lock to 1 ...
    tasks[1].cancel()  # ... which is cancelled before (or after) it resumes
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert [isinstance(result, asyncio.CancelledError) for result in results] == [False, *[True] * 2, *[False] * 3]
    assert order[0] == 0
    assert order[-3:] == [3, 4, 5]
    assert not locks._locks
