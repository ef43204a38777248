"""A cookie-store session too large for one cookie, split across numbered cookies (``NAME``,
``NAME.1``, ...): round trips, size limits, stale chunks, and broken chunk sets."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from litestar import Litestar

from litestar_flash_sessions import SessionConfig
from litestar_flash_sessions.cookies import MAX_SET_COOKIE_BYTES, CookieJar, CookieTooLargeError
from litestar_flash_sessions.stores import CookieStore, MemoryStore
from tests.app import build_app
from tests.conftest import RecordingHandler, in_loop_client
from tests.harness import SECRET

NAME = "session_data"
BIG = 7000
"""Characters of a value whose sealed session takes three cookies (about 9.4 KB of token)."""


def app_on(store: CookieStore | None = None, **config: Any) -> Litestar:
    return build_app(SessionConfig(store=store or CookieStore(SECRET), **config))


@asynccontextmanager
async def running(app: Litestar, base_url: str = "http://testserver.local") -> AsyncIterator[httpx.AsyncClient]:
    async with app.lifespan(), in_loop_client(app, base_url) as client:
        yield client


def set_cookies(response: httpx.Response) -> list[str]:
    return list(response.headers.get_list("set-cookie"))


def pairs(response: httpx.Response) -> list[tuple[str, str]]:
    """The (name, value) of every ``Set-Cookie`` header, in order."""
    result = []
    for header in set_cookies(response):
        name, _, value = header.split(";", 1)[0].partition("=")
        result.append((name, value))
    return result


def expired(response: httpx.Response) -> list[str]:
    """The names the response expires."""
    return [header.split("=", 1)[0] for header in set_cookies(response) if "Max-Age=0" in header]


async def id_with_cookie_header(app: Litestar, cookie_header: str) -> str | None:
    """The session id ``GET /id`` sees for a request carrying exactly this ``Cookie`` header."""
    async with in_loop_client(app) as client:
        response = await client.get("/id", headers={"cookie": cookie_header})
        assert response.status_code == 200
        return response.json()["id"]  # type: ignore[no-any-return]


def tuple_of(parts: tuple[str, str, str]) -> tuple[str, str]:
    return parts[0], parts[2]


def cookie_header(chunks: list[tuple[str, str]]) -> str:
    return "; ".join(f"{name}={value}" for name, value in chunks)


@pytest.mark.parametrize("base_url", ["http://testserver.local", "https://testserver.local"])
async def test_large_session_round_trips_through_several_chunks(base_url: str) -> None:
    big = secrets.token_urlsafe(BIG)[:BIG]
    async with running(app_on(), base_url) as client:
        response = await client.post("/set", json={"user": "ann", "big": big})
        assert response.status_code == 200
        assert [name for name, _ in pairs(response)] == [NAME, f"{NAME}.1", f"{NAME}.2"]
        headers = set_cookies(response)
        assert all(len(header.encode("latin-1")) <= MAX_SET_COOKIE_BYTES for header in headers)
        assert len({header.split(";", 1)[1] for header in headers}) == 1, "every chunk has the same attributes"
        assert pairs(response)[0][1].startswith("3."), "the first chunk counts the chunks"
        session_id = (await client.get("/id")).json()["id"]
        assert session_id is not None
        assert (await client.get("/read/big")).json() == {"value": big, "id": session_id}
        assert (await client.get("/read/user")).json()["value"] == "ann"


async def test_a_session_that_fits_one_cookie_is_one_cookie_without_a_count() -> None:
    async with running(app_on()) as client:
        response = await client.post("/set", json={"user": "ann"})
        [(name, value)] = pairs(response)
        assert name == NAME
        assert "." not in value, "the value is the sealed token itself, as before chunking"
        assert (await client.get("/read/user")).json()["value"] == "ann"


async def test_max_cookies_one_keeps_one_cookie() -> None:
    store = CookieStore(SECRET, max_cookies=1)
    async with running(app_on(store)) as client:
        response = await client.post("/set", json={"big": "x" * (store.max_record_bytes - 200)})
        [(name, value)] = pairs(response)
        assert name == NAME
        assert "." not in value
        assert (await client.get("/read/big")).json()["value"] == "x" * (store.max_record_bytes - 200)


async def test_shrinking_expires_the_stale_chunks() -> None:
    async with running(app_on()) as client:
        await client.post("/set", json={"big": "x" * BIG})
        assert sorted(client.cookies) == [NAME, f"{NAME}.1", f"{NAME}.2"]

        two = await client.post("/set", json={"big": "y" * 4000})  # three chunks down to two
        assert [name for name, _ in pairs(two)] == [NAME, f"{NAME}.1", f"{NAME}.2"]
        assert expired(two) == [f"{NAME}.2"]
        assert sorted(client.cookies) == [NAME, f"{NAME}.1"]
        assert (await client.get("/read/big")).json()["value"] == "y" * 4000

        one = await client.post("/set", json={"big": "z"})  # down to one cookie
        assert expired(one) == [f"{NAME}.1"]
        assert sorted(client.cookies) == [NAME]
        assert (await client.get("/read/big")).json()["value"] == "z"


async def test_growing_sets_every_chunk_and_expires_none() -> None:
    async with running(app_on()) as client:
        await client.post("/set", json={"big": "x"})
        response = await client.post("/set", json={"big": "x" * BIG})
        assert expired(response) == []
        assert sorted(client.cookies) == [NAME, f"{NAME}.1", f"{NAME}.2"]


async def test_logout_expires_every_chunk_the_request_carried() -> None:
    async with running(app_on()) as client:
        await client.post("/set", json={"user": "ann", "big": "x" * BIG})
        response = await client.post("/logout")
        assert expired(response) == [NAME, f"{NAME}.1", f"{NAME}.2"]
        assert all(header.endswith("Max-Age=0; Path=/; HttpOnly; SameSite=Lax") for header in set_cookies(response))
        assert list(client.cookies) == []
        assert (await client.get("/id")).json() == {"id": None}


async def test_logout_of_a_one_cookie_session_expires_one_cookie() -> None:
    async with running(app_on()) as client:
        await client.post("/set", json={"user": "ann"})
        assert expired(await client.post("/logout")) == [NAME]


async def three_chunks(app: Litestar, value: str = "x" * BIG) -> tuple[list[tuple[str, str]], str]:
    """The chunks of a fresh three-chunk session of ``app``, and its id."""
    async with in_loop_client(app) as client:
        response = await client.post("/set", json={"big": value})
        chunks = pairs(response)
        assert len(chunks) == 3
        session_id = await id_with_cookie_header(app, cookie_header(chunks))
        assert session_id is not None
        return chunks, session_id


async def test_the_chunks_are_joined_in_number_order_whatever_the_header_order() -> None:
    app = app_on()
    async with app.lifespan():
        (first, second, third), session_id = await three_chunks(app)
        assert await id_with_cookie_header(app, cookie_header([first, second, third])) == session_id
        assert await id_with_cookie_header(app, cookie_header([third, first, second])) == session_id
        other = "theme=dark; lang=en"
        assert await id_with_cookie_header(app, f"{other}; {cookie_header([second, third, first])}") == session_id
        async with in_loop_client(app) as client:  # one Cookie header per chunk (as HTTP/2 may send)
            headers = [(b"cookie", f"{name}={value}".encode()) for name, value in (third, second, first)]
            assert (await client.get("/id", headers=headers)).json()["id"] == session_id


def renamed(chunk: tuple[str, str], name: str) -> tuple[str, str]:
    return name, chunk[1]


BROKEN: dict[str, Any] = {
    "first missing": lambda a, b: [a[1], a[2]],
    "middle missing": lambda a, b: [a[0], a[2]],
    "last missing": lambda a, b: [a[0], a[1]],
    "two pieces swapped": lambda a, b: [a[0], renamed(a[2], f"{NAME}.1"), renamed(a[1], f"{NAME}.2")],
    "mixed from two sessions": lambda a, b: [a[0], b[1], a[2]],
    "first of another session": lambda a, b: [b[0], a[1], a[2]],
    "a chunk twice": lambda a, b: [a[0], a[1], a[1], a[2]],
    "the first twice": lambda a, b: [a[0], a[0], a[1], a[2]],
    "an extra chunk": lambda a, b: [*a, (f"{NAME}.3", a[2][1])],
    "an extra chunk beyond max_cookies": lambda a, b: [*a, (f"{NAME}.7", a[2][1])],
    "count lowered": lambda a, b: [(NAME, "2" + a[0][1][1:]), a[1]],
    "count raised": lambda a, b: [(NAME, "4" + a[0][1][1:]), *a[1:], (f"{NAME}.3", a[2][1])],
    "count over max_cookies": lambda a, b: [(NAME, "5" + a[0][1][1:]), *a[1:], (f"{NAME}.3", "x"), (f"{NAME}.4", "x")],
    "count of one": lambda a, b: [(NAME, "1" + a[0][1][1:]), *a[1:]],
    "count with a leading zero": lambda a, b: [(NAME, "03" + a[0][1][1:]), *a[1:]],
    "one-cookie value with stale chunks": lambda a, b: [(NAME, a[0][1][2:]), *a[1:]],
}


@pytest.mark.parametrize("case", sorted(BROKEN))
async def test_a_broken_chunk_set_gives_a_fresh_session(case: str) -> None:
    app = app_on()
    async with app.lifespan():
        ours, session_id = await three_chunks(app)
        theirs, _ = await three_chunks(app)
        assert await id_with_cookie_header(app, cookie_header(ours)) == session_id, "the intact set opens"
        broken = BROKEN[case](ours, theirs)
        assert await id_with_cookie_header(app, cookie_header(broken)) is None


OPENED_BY_THE_JAR = {
    "two pieces swapped",
    "mixed from two sessions",
    "first of another session",
    "count lowered",
    "count raised",
}
"""The broken sets the jar joins (their names and count agree): the sealed token then fails."""


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_the_jar_refuses_a_gap_a_duplicate_or_an_extra_chunk_itself(case: str) -> None:
    store = CookieStore(SECRET)
    jar = CookieJar(SessionConfig(store=store), NAME)
    request: Any = {"scheme": "http", "headers": []}

    def chunks_of(record: bytes) -> list[tuple[str, str]]:
        headers = jar.render(store.seal(secrets.token_urlsafe(32), record, None), request)
        return [tuple_of(value.split(b";", 1)[0].decode().partition("=")) for _, value in headers]

    ours, theirs = chunks_of(b"a" * 7000), chunks_of(b"b" * 7000)
    scope: Any = {"headers": [(b"cookie", cookie_header(BROKEN[case](ours, theirs)).encode())]}
    joined = jar.read(scope)
    if case in OPENED_BY_THE_JAR:
        assert joined is not None
        assert store.open(joined) is None, "pieces that are not one token in order do not open"
    else:
        assert joined is None


async def test_a_broken_chunk_set_is_replaced_and_its_leftovers_expired() -> None:
    app = app_on()
    async with app.lifespan():
        (first, _, third), _ = await three_chunks(app)
        async with in_loop_client(app) as client:
            response = await client.post(
                "/set", json={"user": "bob"}, headers={"cookie": cookie_header([first, third])}
            )
            assert response.json()["id"] is None, "a fresh session"
            assert [name for name, _ in pairs(response)] == [NAME, f"{NAME}.2"]
            assert expired(response) == [f"{NAME}.2"]


async def test_server_side_stores_keep_exactly_one_cookie() -> None:
    app = build_app(SessionConfig(store=MemoryStore()))
    async with running(app) as client:
        response = await client.post("/set", json={"big": "x" * 20_000})
        assert [name for name, _ in pairs(response)] == ["session"]
        session_id = (await client.get("/id")).json()["id"]
        assert session_id is not None
        # A jar of one cookie reads its own name only: look-alike chunk cookies change nothing.
        headers = {"cookie": f"session.1=junk; session={client.cookies['session']}; session.2=junk"}
        assert (await client.get("/id", headers=headers)).json()["id"] == session_id


@pytest.mark.parametrize("max_cookies", [1, 4])
async def test_a_session_needing_more_than_max_cookies_is_a_clean_error_at_commit(
    max_cookies: int, session_log: RecordingHandler
) -> None:
    # Attributes far over the 200-byte allowance of max_record_bytes: the session passes the
    # size check at set time, and the jar's CookieTooLargeError, the last line of defence,
    # stops the commit instead of sending cookies a browser would drop.
    store = CookieStore(SECRET, max_cookies=max_cookies)
    domain = "a." * 250 + "testserver.local"
    async with running(app_on(store, cookie_domain=domain)) as client:
        ann = await client.post("/set", json={"user": "ann"})
        [cookie] = pairs(ann)
        response = await client.post(
            "/set", json={"big": "x" * (store.max_record_bytes - 200)}, headers={"cookie": "=".join(cookie)}
        )
        assert response.status_code == 500
        assert response.json() == {"status_code": 500, "detail": "Internal Server Error"}
        assert set_cookies(response) == []
        if max_cookies > 1:
            assert f"max_cookies={max_cookies}" in session_log.text
        assert "4096" in session_log.text
        assert (await client.get("/read/user", headers={"cookie": "=".join(cookie)})).json()["value"] == "ann"


@pytest.mark.parametrize("max_cookies", [1, 2, 4, 20])
@pytest.mark.parametrize("cookie_name", ["s", NAME, "__Host-" + "n" * 60])
def test_a_record_of_max_record_bytes_fits_with_200_bytes_of_attributes(max_cookies: int, cookie_name: str) -> None:
    store = CookieStore(SECRET, cookie_name=cookie_name, max_cookies=max_cookies)
    # Path, Max-Age, HttpOnly, SameSite=Strict and Secure, and a Domain filling the allowance.
    attributes = len("; Path=/; Max-Age=9999999999; HttpOnly; SameSite=Strict; Secure")
    domain = "d" * (200 - attributes - len("; Domain=")) if not cookie_name.startswith("__Host-") else None
    config = SessionConfig(
        store=store, cookie_domain=domain, cookie_httponly=True, cookie_samesite="strict", cookie_secure=True
    )
    jar = CookieJar(config, cookie_name)
    token = store.seal(secrets.token_urlsafe(32), b"r" * store.max_record_bytes, 60)
    assert len(token) <= jar.max_value_bytes()
    for scheme in ("http", "https"):
        request: Any = {"scheme": scheme, "headers": []}
        headers = jar.render(token, request, max_age=9_999_999_999)
        assert 1 <= len(headers) <= max_cookies
        assert all(len(value) <= MAX_SET_COOKIE_BYTES for _, value in headers)
        scope: Any = {"headers": [(b"cookie", b"; ".join(value.split(b";", 1)[0] for _, value in headers))]}
        assert jar.read(scope) == token
        assert store.open(token) is not None


@pytest.mark.parametrize("max_cookies", [1, 4, 20])
def test_max_record_bytes_is_the_documented_bound(max_cookies: int) -> None:
    store = CookieStore(SECRET, max_cookies=max_cookies)
    assert store.max_cookies == max_cookies
    assert store.max_record_bytes == max_cookies * (4096 - len(NAME) - 4 - 200) * 3 // 4 - 33 - 9 - 43
    assert CookieStore(SECRET).max_record_bytes == 11_555
    # Conservative, not wasteful: with the default attributes a session little larger still fits.
    config = SessionConfig(store=store)
    token = store.seal(secrets.token_urlsafe(32), b"r" * store.max_record_bytes, None)
    assert jar_capacity(config) - len(token) < max_cookies * 160


def jar_capacity(config: SessionConfig) -> int:
    return CookieJar(config, config.session_cookie_name).max_value_bytes()


def test_a_value_over_max_cookies_chunks_raises_cookie_too_large() -> None:
    store = CookieStore(SECRET, max_cookies=2)
    jar = CookieJar(SessionConfig(store=store), NAME)
    scope: Any = {"scheme": "http", "headers": []}
    fits = "a" * jar.max_value_bytes()
    assert len(jar.render(fits, scope)) == 2
    with pytest.raises(CookieTooLargeError, match="max_cookies=2"):
        jar.render("a" * (2 * MAX_SET_COOKIE_BYTES), scope)


@pytest.mark.parametrize("bad", [0, 21, -1, True, 2.0, "4", None])
def test_max_cookies_is_checked(bad: Any) -> None:
    with pytest.raises(ValueError, match="max_cookies must be a whole number from 1 to 20"):
        CookieStore(SECRET, max_cookies=bad)
    if bad is not None:  # None asks the jar for the store's
        with pytest.raises(ValueError, match="max_cookies"):
            CookieJar(SessionConfig(), "session", max_cookies=bad)


def test_the_jar_takes_its_chunk_limit_from_the_store() -> None:
    assert CookieJar(SessionConfig(), "session").max_cookies == 1
    assert CookieJar(SessionConfig(store=CookieStore(SECRET, max_cookies=6)), NAME).max_cookies == 6
    assert CookieJar(SessionConfig(store=CookieStore(SECRET)), NAME, max_cookies=2).max_cookies == 2


async def test_a_token_longer_than_max_cookies_allows_does_not_open() -> None:
    small = CookieStore(SECRET, max_cookies=2)
    large = CookieStore(SECRET, max_cookies=4)
    token = large.seal(secrets.token_urlsafe(32), b"r" * large.max_record_bytes, None)
    assert large.open(token) is not None
    assert small.open(token) is None
