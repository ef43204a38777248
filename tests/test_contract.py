"""The behaviour every store must show (SPEC sections 2, 3 and 5), run once per store."""

from __future__ import annotations

import asyncio
import re
import uuid
from typing import Any

import httpx
import pytest

from litestar_flash_sessions import SessionBackend, SessionConfig, record
from litestar_flash_sessions.commit import store_key
from litestar_flash_sessions.stores import SessionStore
from tests.app import RENDEZVOUS, Rendezvous
from tests.conftest import ClientFactory, RecordingHandler
from tests.harness import FakeClock, Harness, read_record

SESSION_ID = re.compile(r"[A-Za-z0-9_-]{43}")


def cookie_name(store: SessionBackend) -> str:
    return SessionConfig(store=store).session_cookie_name


def set_cookies(response: Any) -> list[str]:
    return list(response.headers.get_list("set-cookie"))


async def stored(store: SessionBackend, session_id: str | None) -> bytes | None:
    """The live record a server-side store holds for the id (a tombstone counts as none); for the
    cookie store, always None."""
    if not isinstance(store, SessionStore) or session_id is None:
        return None
    raw = await read_record(store, session_id)
    return raw if raw is not None and isinstance(record.decode(raw), record.Live) else None


def use_cookie(client: httpx.AsyncClient, name: str, value: str) -> None:
    """Make the client send exactly this session cookie, as a replaying attacker would."""
    client.cookies.clear()
    client.cookies.set(name, value, domain="testserver.local", path="/")


async def current_id(client: httpx.AsyncClient) -> str | None:
    return (await client.get("/id")).json()["id"]  # type: ignore[no-any-return]


# --- the store protocol itself (stores/base.py), on the real server ------------------------

RECORD_ID = "r" * 43


def server_side_store(store: SessionBackend) -> SessionStore:
    if not isinstance(store, SessionStore):
        pytest.skip("a cookie store keeps no record on a server")
    return store


async def test_store_set_is_a_compare_and_set(store: SessionBackend) -> None:
    store = server_side_store(store)
    assert await store.set(RECORD_ID, b"one", 100, None)
    assert not await store.set(RECORD_ID, b"other", 100, None), "a new id must not hold a record"
    assert not await store.set(RECORD_ID, b"other", 100, b"stale"), "the record changed since it was read"
    assert await store.get(RECORD_ID, None) == b"one"
    assert await store.set(RECORD_ID, b"two", 100, b"one")
    assert await store.get(RECORD_ID, None) == b"two"
    await store.delete(RECORD_ID)
    assert not await store.set(RECORD_ID, b"three", 100, b"two"), "the record was deleted since it was read"
    assert await store.get(RECORD_ID, None) is None
    await store.delete(RECORD_ID)  # deleting what is not there is fine


async def test_store_expired_record_counts_as_absent(store: SessionBackend, harness: Harness, clock: FakeClock) -> None:
    store = server_side_store(store)
    if not harness.injects_clock:
        pytest.skip("the server keeps time itself: see test_sliding_expiry and the store's own tests")
    assert await store.set(RECORD_ID, b"old", 10, None)
    clock.advance(10)
    assert await store.get(RECORD_ID, None) is None, "never returned, even before it is reaped"
    assert await store.get(RECORD_ID, 10) is None, "a sliding read does not revive it"
    assert not await store.set(RECORD_ID, b"new", 10, b"old"), "an expired record is not the one we read"
    assert await store.set(RECORD_ID, b"new", 10, None), "an expired record counts as absent"
    assert await store.get(RECORD_ID, None) == b"new"


async def test_store_keeps_any_bytes(store: SessionBackend) -> None:
    store = server_side_store(store)
    record = bytes(range(256)) * 400 + "é/.%\x00".encode()
    assert await store.set(RECORD_ID, record, 100, None)
    assert await store.get(RECORD_ID, 100) == record
    assert await store.set(RECORD_ID, b"\x00", None, record)
    assert await store.get(RECORD_ID, None) == b"\x00"


# --- SPEC 2: the Session object -------------------------------------------------------------


async def test_set_then_get_across_requests(make_client: ClientFactory) -> None:
    async with make_client() as client:
        assert (await client.post("/set", json={"user": "ann", "n": 3})).status_code == 200
        assert (await client.get("/read/user")).json()["value"] == "ann"
        assert (await client.get("/read/n")).json()["value"] == 3
        assert (await client.get("/read/missing")).json()["value"] is None


async def test_set_none_deletes_the_key(make_client: ClientFactory) -> None:
    async with make_client() as client:
        await client.post("/set", json={"user": "ann", "keep": 1})
        await client.post("/set", json={"user": None})
        assert (await client.get("/has/user")).json() == {"has": False}
        assert (await client.get("/read/keep")).json()["value"] == 1


async def test_flash_is_read_once(make_client: ClientFactory) -> None:
    async with make_client() as client:
        await client.post("/set", json={"user": "ann"})
        await client.post("/flash", json={"message": "hello"})
        assert (await client.get("/has/message")).json() == {"has": True}
        assert (await client.get("/has/message")).json() == {"has": True}, "has() must not consume"
        assert (await client.get("/read/message")).json()["value"] == "hello"
        assert (await client.get("/read/message")).json()["value"] is None
        assert (await client.get("/has/message")).json() == {"has": False}


async def test_flash_survives_a_redirect(make_client: ClientFactory) -> None:
    async with make_client() as client:
        response = await client.post("/flash-redirect", follow_redirects=True)
        assert response.status_code == 200
        assert response.json()["value"] == "saved"
        assert (await client.get("/read/message")).json()["value"] is None


async def test_stored_value_wins_over_flash_which_stays(make_client: ClientFactory) -> None:
    async with make_client() as client:
        await client.post("/flash", json={"k": "flashed"})
        await client.post("/set", json={"k": "stored"})
        assert (await client.get("/read/k")).json()["value"] == "stored"
        await client.post("/set", json={"k": None})
        assert (await client.get("/read/k")).json()["value"] == "flashed"
        assert (await client.get("/read/k")).json()["value"] is None


async def test_bookkeeping_is_not_among_user_keys(make_client: ClientFactory) -> None:
    async with make_client() as client:
        await client.post("/flash", json={"message": "hello"})
        for key in ("_flash", "flash", "data", "_data"):
            assert (await client.get(f"/read/{key}")).json()["value"] is None
            assert (await client.get(f"/has/{key}")).json() == {"has": False}
        assert (await client.get("/read/message")).json()["value"] == "hello"


async def test_get_converts_with_type(make_client: ClientFactory) -> None:
    async with make_client() as client:
        assert (await client.post("/set-typed")).status_code == 200
        uuid = (await client.get("/read/uuid", params={"type": "uuid"})).json()["value"]
        assert uuid == "00000000-0000-0000-0000-000000000007"
        when = (await client.get("/read/when", params={"type": "datetime"})).json()["value"]
        assert when.startswith("2026-01-02T")
        assert (await client.get("/read/point", params={"type": "point"})).json()["value"] == {"x": 1, "y": 2}
        response = await client.get("/read/uuid", params={"type": "int"})
        assert response.status_code == 500, "a value that does not convert is the handler's error"


async def test_unencodable_value_raises_type_error_naming_the_key(make_client: ClientFactory) -> None:
    async with make_client() as client:
        error = (await client.post("/set-unencodable")).json()["error"]
        assert "'bad'" in error
        assert "object" in error


async def test_id_is_none_until_stored(make_client: ClientFactory) -> None:
    async with make_client() as client:
        assert await current_id(client) is None
        await client.post("/set", json={"user": "ann"})
        session_id = await current_id(client)
        assert session_id is not None
        assert SESSION_ID.fullmatch(session_id)


async def test_session_is_a_flash_session(make_client: ClientFactory) -> None:
    async with make_client() as client:
        assert (await client.get("/is-flash-session")).json() == {"is": True}


async def test_delete_session(make_client: ClientFactory, store: SessionBackend) -> None:
    async with make_client() as client:
        await client.post("/set", json={"user": "ann"})
        session_id = await current_id(client)
        old_cookie = client.cookies[cookie_name(store)]
        response = await client.post("/logout")
        assert response.json() == {"still_readable": "ann"}, "data stays readable for the rest of the request"
        [header] = set_cookies(response)
        assert header.startswith(f"{cookie_name(store)}=;")
        assert "Max-Age=0" in header
        assert await stored(store, session_id) is None
        assert (await client.get("/read/user")).json() == {"value": None, "id": None}
        if isinstance(store, SessionStore):
            use_cookie(client, cookie_name(store), old_cookie)
            assert (await client.get("/read/user")).json()["value"] is None, "the old id is dead on the server"


async def test_what_follows_delete_session_lives_on_in_a_fresh_session(
    make_client: ClientFactory, store: SessionBackend
) -> None:
    async with make_client() as client:
        await client.post("/switch-user", json={"user": "ann"})
        await client.post("/set", json={"cart": "apples"})
        ann = (await client.get("/me")).json()
        old_cookie = client.cookies[cookie_name(store)]
        response = await client.post("/switch-user", json={"user": "bob"})
        assert response.json() == {"user_id_after_logout": None, "cart_still_readable": "apples"}
        [header] = set_cookies(response)
        assert "Max-Age=0" not in header, "the fresh session's cookie, not an expiry"
        bob = (await client.get("/me")).json()
        assert bob["user"] == "bob"
        assert bob["values"] == {"user": "bob"}, "only what was set after the logout"
        assert bob["handle"] not in (None, ann["handle"])
        assert bob["id"] not in (None, ann["id"])
        assert (await client.get("/read/message")).json()["value"] == "Welcome, bob"
        if isinstance(store, SessionStore):
            listed = (await client.get("/my-sessions")).json()
            assert [entry["handle"] for entry in listed] == [bob["handle"]], "listed under its user"
            assert await stored(store, ann["id"]) is None
            use_cookie(client, cookie_name(store), old_cookie)
            assert (await client.get("/me")).json()["user"] is None, "the old id is dead on the server"


@pytest.mark.parametrize("emptying", [{"user": None}, {"clear": True}], ids=["set-none", "clear"])
async def test_a_session_emptied_keeps_its_id(
    make_client: ClientFactory, store: SessionBackend, emptying: dict[str, Any]
) -> None:
    # clear(), or deleting the last value, empties the session; only delete_session() ends it.
    async with make_client() as client:
        await client.post("/set", json={"user": "ann"})
        session_id = await current_id(client)
        if "clear" in emptying:
            response = await client.post("/clear")
        else:
            response = await client.post("/set", json=emptying)
        assert response.status_code == 200
        assert not any("Max-Age=0" in header for header in set_cookies(response)), "the cookie was expired"
        assert await current_id(client) == session_id
        assert (await client.get("/read/user")).json() == {"value": None, "id": session_id}
        await client.post("/set", json={"cart": "apples"})
        assert (await client.get("/read/cart")).json() == {"value": "apples", "id": session_id}


async def test_rotating_a_session_left_empty_ends_it(make_client: ClientFactory, store: SessionBackend) -> None:
    async with make_client() as client:
        await client.post("/set", json={"user": "ann"})
        old_id = await current_id(client)
        old_cookie = client.cookies[cookie_name(store)]
        response = await client.post("/to-anonymous")
        [header] = set_cookies(response)
        assert "Max-Age=0" in header, "no id is worth keeping for an empty session"
        await client.post("/set", json={"cart": "apples"})
        new_id = await current_id(client)
        assert new_id not in (None, old_id), "what comes after lands under a new id"
        if isinstance(store, SessionStore):
            assert await stored(store, old_id) is None
            use_cookie(client, cookie_name(store), old_cookie)
            assert (await client.get("/read/cart")).json() == {"value": None, "id": None}, "the old id is dead"


@pytest.mark.parametrize("path", ["/rotate", "/rotate-state", "/rotate-guard", "/rotate-middleware"])
async def test_rotation_gives_a_new_id_and_kills_the_old(
    make_client: ClientFactory, store: SessionBackend, path: str
) -> None:
    async with make_client() as client:
        await client.post("/set", json={"user": "ann"})
        old_id = await current_id(client)
        old_cookie = client.cookies[cookie_name(store)]
        response = await client.post(path)
        assert response.status_code == 200
        assert len(set_cookies(response)) == 1
        new_id = await current_id(client)
        assert new_id is not None
        assert new_id != old_id
        assert (await client.get("/read/user")).json()["value"] == "ann", "rotation keeps the data"
        if isinstance(store, SessionStore):
            assert await stored(store, old_id) is None
            use_cookie(client, cookie_name(store), old_cookie)
            assert (await client.get("/read/user")).json() == {"value": None, "id": None}


async def test_rotating_a_new_session_stores_nothing(make_client: ClientFactory) -> None:
    async with make_client() as client:
        response = await client.post("/rotate")
        assert set_cookies(response) == []


# --- SPEC 3: one request, step by step ------------------------------------------------------


async def test_new_empty_session_stores_nothing_and_sends_no_cookie(make_client: ClientFactory) -> None:
    async with make_client() as client:
        response = await client.get("/read/user")
        assert response.status_code == 200
        assert set_cookies(response) == []
        assert response.headers["vary"] == "Cookie"


async def test_handler_without_session_gets_no_cookie_and_no_vary(make_client: ClientFactory) -> None:
    async with make_client() as client:
        await client.post("/set", json={"user": "ann"})
        response = await client.get("/plain")
        assert response.text == "plain"
        assert set_cookies(response) == []
        assert "vary" not in response.headers


async def test_session_through_another_dependency(make_client: ClientFactory) -> None:
    async with make_client() as client:
        await client.post("/set", json={"user": "ann"})
        response = await client.get("/through-dependency")
        assert response.json() == {"user": "ann"}
        assert response.headers["vary"] == "Cookie"


@pytest.mark.parametrize("idle", [None, 1_209_600])
async def test_unchanged_session_is_not_rewritten(
    make_client: ClientFactory, store: SessionBackend, idle: int | None
) -> None:
    if idle and not isinstance(store, SessionStore):
        pytest.skip("with an idle timeout the cookie store re-seals its cookie to slide the sealed expiry")
    async with make_client(expire_after_seconds=idle) as client:
        await client.post("/set", json={"user": "ann"})
        session_id = await current_id(client)
        before = await stored(store, session_id)
        response = await client.get("/read/user")
        assert set_cookies(response) == []
        assert await stored(store, session_id) == before


async def test_nothing_is_saved_when_the_handler_fails(make_client: ClientFactory, store: SessionBackend) -> None:
    async with make_client() as client:
        await client.post("/set", json={"user": "ann"})
        response = await client.post("/fail")
        assert response.status_code == 500
        assert set_cookies(response) == []
        assert (await client.get("/read/user")).json()["value"] == "ann"


async def test_client_error_still_saves(make_client: ClientFactory) -> None:
    async with make_client() as client:
        response = await client.post("/fail-400")
        assert response.status_code == 400
        assert len(set_cookies(response)) == 1
        assert (await client.get("/read/user")).json()["value"] == "saved despite 400"


async def test_client_chosen_id_is_never_adopted(make_client: ClientFactory, store: SessionBackend) -> None:
    planted = "A" * 43
    async with make_client() as client:
        use_cookie(client, cookie_name(store), planted)
        await client.post("/set", json={"user": "ann"})
        session_id = await current_id(client)
        assert session_id is not None
        assert session_id != planted
        assert await stored(store, planted) is None


async def test_ids_are_random_and_url_safe(make_client: ClientFactory) -> None:
    ids = set()
    for _ in range(5):
        async with make_client() as client:
            await client.post("/set", json={"user": "ann"})
            session_id = await current_id(client)
            assert session_id is not None
            assert SESSION_ID.fullmatch(session_id)
            ids.add(session_id)
    assert len(ids) == 5


async def test_sliding_expiry(
    make_client: ClientFactory, harness: Harness, clock: FakeClock, store: SessionBackend
) -> None:
    ttl = 2 if not harness.injects_clock else 100

    async def advance(seconds: float) -> None:
        if harness.injects_clock:
            clock.advance(seconds * ttl / 2)
        else:
            await asyncio.sleep(seconds)

    async with make_client(expire_after_seconds=ttl) as client:
        await client.post("/set", json={"user": "ann"})
        session_id = await current_id(client)
        for _ in range(3):  # each read slides the expiry, so 3 x 0.6 TTL stays alive
            await advance(1.2)
            assert (await client.get("/read/user")).json()["value"] == "ann"
        await advance(2.2)
        assert (await client.get("/read/user")).json() == {"value": None, "id": None}
        assert await stored(store, session_id) is None


# --- concurrency: no lost updates, flashes at most once ------------------------------------


async def test_concurrent_changes_of_different_keys_are_both_kept(make_client: ClientFactory, harness: Harness) -> None:
    if not harness.server_side:
        pytest.skip("a cookie holds the whole session: the browser keeps the last cookie it gets")
    meeting = uuid.uuid4().hex
    RENDEZVOUS[meeting] = Rendezvous(2)
    async with make_client() as client:
        await client.post("/set", json={"base": 0})
        first, second = await asyncio.gather(
            client.post(f"/set-together/{meeting}", json={"a": 1, "base": 1}),
            client.post(f"/set-together/{meeting}", json={"b": 2}),
        )
        assert (first.status_code, second.status_code) == (200, 200)
        for key, value in {"a": 1, "b": 2, "base": 1}.items():
            assert (await client.get(f"/read/{key}")).json()["value"] == value


async def test_a_flash_read_by_concurrent_requests_is_delivered_once(
    make_client: ClientFactory, harness: Harness
) -> None:
    if not harness.server_side:
        pytest.skip("a cookie holds the whole session: both requests carry the same flash")
    meeting = uuid.uuid4().hex
    RENDEZVOUS[meeting] = Rendezvous(2)
    async with make_client() as client:
        await client.post("/flash", json={"message": "once", "other": "kept"})
        responses = await asyncio.gather(
            client.get(f"/read-together/{meeting}/message", follow_redirects=False),
            client.get(f"/read-together/{meeting}/message", follow_redirects=False),
        )
        statuses = sorted(response.status_code for response in responses)
        assert statuses == [200, 303]
        [shown] = [response.json() for response in responses if response.status_code == 200]
        assert shown == {"value": "once"}
        [retry] = [response for response in responses if response.status_code == 303]
        assert retry.headers["location"] == f"/read-together/{meeting}/message"
        assert (await client.get("/read/message")).json()["value"] is None
        assert (await client.get("/read/other")).json()["value"] == "kept"


# --- SPEC 5: bad input --------------------------------------------------------------------


BAD_COOKIES = [
    "garbage",
    "",
    "A" * 42,
    "A" * 44,
    "../../etc/passwd",
    "%00%ff",
    "A" * 5000,
    '"quoted"',
    "é" * 43,
]


@pytest.mark.parametrize("value", BAD_COOKIES)
async def test_bad_cookie_gives_a_fresh_session(make_client: ClientFactory, store: SessionBackend, value: str) -> None:
    async with make_client() as client:
        raw = f"{cookie_name(store)}={value}".encode()  # UTF-8 bytes, as a broken client sends them
        response = await client.get("/read/user", headers={"cookie": raw})
        assert response.status_code == 200
        assert response.json() == {"value": None, "id": None}
        response = await client.post("/set", json={"user": "ann"}, headers={"cookie": raw})
        assert response.status_code == 200


async def test_tampered_and_truncated_cookies_give_a_fresh_session(
    make_client: ClientFactory, store: SessionBackend
) -> None:
    async with make_client() as client:
        await client.post("/set", json={"user": "ann"})
        good = client.cookies[cookie_name(store)]
        client.cookies.clear()
        flipped = good[:20] + ("A" if good[20] != "A" else "B") + good[21:]
        for value in (flipped, good[:-1], good[:-10], good[: len(good) // 2], good + "A"):
            response = await client.get("/read/user", headers={"cookie": f"{cookie_name(store)}={value}"})
            assert response.status_code == 200
            assert response.json() == {"value": None, "id": None}
        response = await client.get("/read/user", headers={"cookie": f"{cookie_name(store)}={good}"})
        assert response.json()["value"] == "ann", "the untouched cookie still works"


def nested_too_deeply(record: bytes) -> bytes:
    """The record with its value "ann" replaced by a list nested deeper than any stack decodes."""
    assert record.count(b"\xa3ann") == 1
    return record.replace(b"\xa3ann", b"\x91" * 5000 + b"\x90")


@pytest.mark.parametrize("corrupt", [lambda _: b"\xc1 not msgpack", nested_too_deeply], ids=["garbage", "too-deep"])
async def test_corrupt_record_gives_a_fresh_session_and_a_warning(
    make_client: ClientFactory, store: SessionBackend, session_log: RecordingHandler, corrupt: Any
) -> None:
    if not isinstance(store, SessionStore):
        pytest.skip("a cookie store has no record on the server to corrupt")
    async with make_client() as client:
        await client.post("/set", json={"user": "ann"})
        session_id = await current_id(client)
        assert session_id is not None
        record = await read_record(store, session_id)
        assert record is not None
        assert await store.set(store_key(session_id), corrupt(record), None, record)
        response = await client.get("/read/user")
        assert response.json() == {"value": None, "id": None}
        assert "WARNING corrupt session record in" in session_log.text


async def test_other_cookies_are_left_alone(make_client: ClientFactory, store: SessionBackend) -> None:
    async with make_client() as client:
        await client.post("/set", json={"user": "ann"})
        value = client.cookies[cookie_name(store)]
        header = f"theme=dark; x{cookie_name(store)}=nope; {cookie_name(store)}={value}; other=1"
        response = await client.get("/read/user", headers={"cookie": header})
        assert response.json()["value"] == "ann"


async def test_setting_the_value_a_key_holds_sends_no_new_cookie(
    make_client: ClientFactory, store: SessionBackend
) -> None:
    # express-session's "rolling: false": a handler that stores what is already there (the user
    # on every page) does not make the cookie store re-seal and send its cookie each time.
    async with make_client() as client:
        await client.post("/set", json={"user": "ann", "visits": 1, "admin": 0, "cart": ["apple"]})
        response = await client.post("/set", json={"user": "ann", "visits": 1})
        assert set_cookies(response) == []
        for values in ({"admin": False}, {"visits": 1.0}, {"cart": ["apple"]}):
            # Equal, but not the same value to store: another type, or a container (it may have
            # been changed in place): sealed anew.
            response = await client.post("/set", json=values)
            if not isinstance(store, SessionStore):
                assert len(set_cookies(response)) == 1, values
        assert (await client.get("/read/admin")).json()["value"] is False
        await client.post("/append/cart", json="pear")  # the same list, changed in place, set again
        assert (await client.get("/read/cart")).json()["value"] == ["apple", "pear"]
