"""Cookies as browsers and OWASP want them, answers a shared cache must not keep, and faults
answered with 503 (SPEC 9)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from litestar import Litestar, Request, Response, get
from litestar.background_tasks import BackgroundTask

from litestar_flash_sessions import Session, SessionConfig, SessionPlugin
from litestar_flash_sessions.middleware import OutageLog, in_cookie_path
from litestar_flash_sessions.stores import MemoryStore
from tests.conftest import RecordingHandler, app_client, in_loop_client
from tests.harness import SECRET, FakeClock
from tests.test_plugin import CountingStore


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"cookie_name": "__Host-s", "cookie_domain": "example.com"}, "__Host-"),
        ({"cookie_name": "__Host-s", "cookie_path": "/app"}, "__Host-"),
        ({"cookie_name": "__Host-s", "cookie_secure": False}, "must be Secure"),
        ({"cookie_name": "__Secure-s", "cookie_secure": False}, "must be Secure"),
        ({"cookie_name": "s" * 257}, "over 256"),
    ],
)
def test_cookie_names_browsers_would_refuse_are_value_errors(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SessionConfig(**fields)


def test_cookie_prefixes_with_their_rules_are_accepted() -> None:
    assert SessionConfig(cookie_name="__Host-s").always_secure
    assert SessionConfig(cookie_name="__Secure-s", cookie_domain="example.com", cookie_path="/a").always_secure
    assert SessionConfig(cookie_samesite="none").always_secure
    assert not SessionConfig().always_secure


@pytest.mark.parametrize("fields", [{"cookie_name": "__Host-s"}, {"cookie_samesite": "none"}])
async def test_secure_is_sent_even_over_plain_http_where_browsers_require_it(fields: dict[str, Any]) -> None:
    async with app_client(MemoryStore(), base_url="http://testserver.local", **fields) as client:
        (cookie,) = (await client.post("/set", json={"user": "ann"})).headers.get_list("set-cookie")
        assert "; Secure" in cookie


@get("/cached-landing", cache=60)
async def cached_landing(session: Session) -> str:
    session.setdefault("cart", [])  # a landing page that starts a session
    return "welcome"


@get("/whoami")
async def whoami(session: Session) -> dict[str, Any]:
    return {"id": session.id, "cart": session.get("cart")}


async def test_litestar_s_response_cache_never_hands_one_visitor_s_cookie_to_another() -> None:
    # Litestar's response cache (a route's cache=...) sits inside the session middleware and
    # keeps the messages it passed on; the session's Set-Cookie must not be added to them.
    app = Litestar([cached_landing, whoami], plugins=[SessionPlugin(SessionConfig())])
    async with app.lifespan(), in_loop_client(app) as alice, in_loop_client(app) as bob:
        first = await alice.get("/cached-landing")
        assert first.text == "welcome"
        assert first.headers.get_list("set-cookie"), "the first visitor gets a session"
        alice_id = (await alice.get("/whoami")).json()["id"]
        replayed = await bob.get("/cached-landing")
        assert replayed.text == "welcome"
        assert not replayed.headers.get_list("set-cookie"), "the cached page carried another visitor's cookie"
        assert (await bob.get("/whoami")).json() == {"id": None, "cart": None}
        assert alice_id is not None


async def test_a_response_that_sets_the_cookie_is_not_cacheable_by_shared_caches() -> None:
    async with app_client(MemoryStore()) as client:
        created = await client.post("/set", json={"user": "ann"})
        assert created.headers["cache-control"] == "no-store"
        read = await client.get("/read/user")
        assert "cache-control" not in read.headers, "no cookie sent: the handler's caching is its own"
        own = await client.post("/set-cached")
        assert own.headers["cache-control"] == "public, max-age=60", "no cookie sent: left as the handler set it"
        client.cookies.clear()
        new = await client.post("/set-cached")
        assert new.headers["cache-control"] == "private, max-age=60", "public became private"
        logout = await client.post("/logout")
        assert logout.headers["cache-control"] == "no-store"


def test_path_matching_follows_rfc_6265() -> None:
    assert in_cookie_path("/anything", "/")
    assert in_cookie_path("/app", "/app")
    assert in_cookie_path("/app/x", "/app")
    assert in_cookie_path("/app/x", "/app/")
    assert not in_cookie_path("/application", "/app")
    assert not in_cookie_path("/", "/app")


async def test_a_request_outside_cookie_path_gets_no_cookie_and_stores_nothing() -> None:
    store = MemoryStore()
    async with app_client(store, cookie_path="/app") as client:
        response = await client.post("/set", json={"user": "ann"})
        assert response.status_code == 200
        assert "set-cookie" not in response.headers
        assert len(store) == 0


async def test_a_change_after_the_response_started_raises_naming_the_key() -> None:
    store = MemoryStore()
    async with app_client(store) as client:
        response = await client.get("/stream-set")
        assert response.text.startswith("started;refused: ")
        assert "'after'" in response.text
        assert (await client.get("/read/before")).json()["value"] == 1
        assert (await client.get("/read/after")).json()["value"] is None


async def test_a_store_outage_is_a_503_with_retry_after_and_vary(session_log: RecordingHandler) -> None:
    store = CountingStore()
    async with app_client(store) as client:
        await client.post("/set", json={"user": "ann"})
        store.down = True
        for response in (await client.get("/read/user"), await client.post("/set", json={"user": "bob"})):
            assert response.status_code == 503
            assert response.headers["retry-after"] == "5"
            assert "Cookie" in response.headers["vary"]


def down_from(store: CountingStore, stage: str) -> Callable[[], None]:
    """Make ``store`` go down at the next request: at its load (``"load"``), or between its load
    and its commit (``"commit"``). Returns what brings it back up.
    """
    real = store.get

    async def get(*args: Any) -> Any:
        store.down = stage == "load"
        loaded = await real(*args)
        store.down = True
        return loaded

    def up() -> None:
        store.down, store.get = False, real  # type: ignore[method-assign]

    store.get = get  # type: ignore[method-assign]
    return up


async def test_a_store_failing_at_commit_is_a_503_with_retry_after_and_vary() -> None:
    store = CountingStore()
    async with app_client(store) as client:
        await client.post("/set", json={"user": "ann"})
        down_from(store, "commit")
        response = await client.post("/set", json={"user": "bob"})
        assert response.status_code == 503
        assert response.headers["retry-after"] == "5"
        assert response.headers["vary"] == "Cookie"


def test_outage_lines_are_rate_limited_per_store(session_log: RecordingHandler) -> None:
    clock = FakeClock(0.0)
    outages = OutageLog(interval=60, clock=clock)
    for _ in range(100):
        outages.report("RedisStore", OSError("refused"))
        clock.advance(0.06)  # 100 failures in 6 s
    outages.report("PostgresStore", OSError("refused"))
    clock.advance(60)
    outages.report("RedisStore", OSError("refused"))
    lines = [record.getMessage() for record in session_log.records]
    assert len(lines) == 3
    assert "RedisStore" in lines[0]
    assert "PostgresStore" in lines[1]
    assert "99 more failures" in lines[2]


def test_a_weak_cookie_secret_is_refused_with_advice() -> None:
    from litestar_flash_sessions.stores import CookieStore

    with pytest.raises(ValueError, match="token_urlsafe"):
        CookieStore("a" * 32)
    assert CookieStore(SECRET).cookie_name == "session_data"


async def test_a_store_failing_at_commit_answers_through_the_apps_exception_handlers() -> None:
    from litestar import Litestar, MediaType, Response
    from litestar.exceptions import HTTPException

    from litestar_flash_sessions import SessionPlugin
    from tests.app import HANDLERS
    from tests.conftest import in_loop_client

    def html_page(request: Request[Any, Any, Any], exc: HTTPException) -> Response[str]:
        page = f"<h1>{exc.status_code} {exc.detail}</h1>"
        return Response(page, status_code=exc.status_code, media_type=MediaType.HTML, headers=exc.headers)

    store = CountingStore()
    app = Litestar(
        HANDLERS, plugins=[SessionPlugin(SessionConfig(store=store))], exception_handlers={HTTPException: html_page}
    )
    async with app.lifespan(), in_loop_client(app) as client:
        await client.post("/set", json={"user": "ann"})
        down_from(store, "commit")
        response = await client.post("/set", json={"user": "bob"})
        assert response.status_code == 503
        assert response.text == "<h1>503 Session store unavailable</h1>"
        assert response.headers["content-type"].startswith("text/html")
        assert response.headers["retry-after"] == "5"
        assert "set-cookie" not in response.headers


@pytest.mark.parametrize("down_at", ["load", "commit"])
async def test_an_error_page_of_an_outage_may_read_the_session(down_at: str) -> None:
    # A base template shows the user and the flashes on every page, error pages included.
    from litestar import Litestar, MediaType, Response
    from litestar.exceptions import HTTPException

    from litestar_flash_sessions import SessionPlugin
    from tests.app import HANDLERS
    from tests.conftest import in_loop_client

    def page(request: Request[Any, Any, Any], exc: HTTPException) -> Response[str]:
        user, messages = request.session.get("user"), request.session.pop("_messages", [])
        body = f"{exc.status_code} user={user} messages={len(messages)}"
        return Response(body, status_code=exc.status_code, media_type=MediaType.TEXT, headers=exc.headers)

    store = CountingStore()
    app = Litestar(
        HANDLERS, plugins=[SessionPlugin(SessionConfig(store=store))], exception_handlers={HTTPException: page}
    )
    async with app.lifespan(), in_loop_client(app) as client:
        await client.post("/set", json={"user": "ann"})
        await client.post("/flash", json={"_messages": "hi"})  # as Litestar's flash() keeps them
        up = down_from(store, down_at)
        response = await client.post("/set", json={"user": "bob"})
        assert response.status_code == 503
        assert response.text == ("503 user=None messages=0" if down_at == "load" else "503 user=bob messages=1")
        assert response.headers["retry-after"] == "5"
        up()
        assert (await client.get("/read/user")).json()["value"] == "ann", "nothing was saved"
        assert (await client.get("/read/_messages")).json()["value"] == "hi", "the flash is still pending"


@pytest.mark.parametrize("kind", ["memory", "cookie"])
async def test_a_flash_category_that_is_not_text_is_refused_and_the_session_kept(kind: str) -> None:
    # Stored, it would not decode again: the next load would start a fresh session (a logout).
    from litestar_flash_sessions.stores import CookieStore

    async with app_client(MemoryStore() if kind == "memory" else CookieStore(SECRET)) as client:
        await client.post("/set", json={"user": "ann"})
        response = await client.post("/flash-category", json={"category": 7})
        assert response.status_code == 400
        assert "category must be a string" in response.text
        assert (await client.get("/read/user")).json()["value"] == "ann"
        assert (await client.post("/flash-category", json={"category": "info"})).status_code == 200
        assert (await client.get("/read/m")).json()["value"] == "hello"


@pytest.mark.parametrize("failure", ["store down", "set_session too large"])
async def test_after_a_failed_commit_a_later_change_still_raises(failure: str) -> None:
    # The error page may read the session; a background task that changes it afterwards must
    # still be told the change cannot be saved, not have it dropped without a word.
    from litestar import Litestar, post

    from litestar_flash_sessions import SessionPlugin
    from tests.conftest import in_loop_client

    outcomes: list[str] = []

    async def change_later(session: Session) -> None:
        try:
            session.set("late", 1)
        except RuntimeError:
            outcomes.append("raised")
        else:
            outcomes.append("accepted")

    @post("/set-then-later", status_code=200)
    async def set_then_later(request: Request[Any, Any, Any], session: Session) -> Response[None]:
        if failure == "store down":
            session.set("x", 1)
        else:
            request.set_session({"blob": "x" * 5000})  # refused as the response starts: a 413
        return Response(None, background=BackgroundTask(change_later, session))

    store = CountingStore()
    app = Litestar([set_then_later], plugins=[SessionPlugin(SessionConfig(store=store, max_size_bytes=1000))])
    async with app.lifespan(), in_loop_client(app) as client:
        store.down = failure == "store down"
        assert (await client.post("/set-then-later")).status_code == (503 if store.down else 413)
    assert outcomes == ["raised"]


async def test_a_cookie_nested_too_deeply_to_decode_gives_a_fresh_session() -> None:
    # Sealed with the store's own secret (it could only come from the app): still never a 500.
    from litestar_flash_sessions.record import Live, encode
    from litestar_flash_sessions.stores import CookieStore
    from tests.test_contract import nested_too_deeply

    store = CookieStore(SECRET)
    record = encode(Live({"user": "ann"}, [], created_at=store.now(), seen_at=store.now()))
    token = store.seal("s" * 43, nested_too_deeply(record), None)
    async with app_client(store) as client:
        client.cookies.set("session_data", token, domain="testserver.local")
        response = await client.get("/read/user")
        assert response.status_code == 200
        assert response.json() == {"value": None, "id": None}


async def test_request_set_session_of_a_model_nested_too_deeply_is_a_400() -> None:
    import dataclasses

    from litestar import post

    from tests.app import nested

    @dataclasses.dataclass
    class Prefs:
        theme: list[Any]

    @post("/login-model", status_code=200)
    async def login_model(request: Request[Any, Any, Any], session: Session) -> None:
        request.set_session(Prefs(nested(5000)))

    app = Litestar([login_model], plugins=[SessionPlugin(SessionConfig())])
    async with app.lifespan(), in_loop_client(app) as client:
        response = await client.post("/login-model")
        assert response.status_code == 400, response.text
        assert "nested too deeply" in response.json()["detail"]


async def test_a_head_request_keeps_the_flashes_it_read() -> None:
    # A link checker's HEAD runs the GET handler, but its body reaches no screen.
    from litestar import route

    from tests.app import flash

    @route("/show", http_method=["GET", "HEAD"])
    async def show(session: Session) -> dict[str, Any]:
        return {"message": session.get("message")}

    app = Litestar([show, flash], plugins=[SessionPlugin(SessionConfig())])
    async with app.lifespan(), in_loop_client(app) as client:
        await client.post("/flash", json={"message": "Login successful"})
        assert (await client.head("/show")).status_code == 200
        assert (await client.get("/show")).json() == {"message": "Login successful"}
        assert (await client.get("/show")).json() == {"message": None}, "shown once"


@pytest.mark.parametrize("when", ["handshake", "send"])
def test_a_store_failing_at_a_websocket_s_commit_closes_it_as_an_outage(
    when: str, session_log: RecordingHandler
) -> None:
    from litestar import WebSocket, websocket
    from litestar.exceptions import WebSocketDisconnect
    from litestar.testing import TestClient

    from tests.app import set_values

    @websocket("/ws")
    async def socket_handler(socket: WebSocket[Any, Any, Any], session: Session) -> None:
        if when == "handshake":
            session.set("ws", 1)  # saved at the handshake
        await socket.accept()
        session.set("later", 1)  # saved before the next message
        await socket.send_json({"ok": 1})
        await socket.close()

    store = CountingStore()
    app = Litestar([set_values, socket_handler], plugins=[SessionPlugin(SessionConfig(store=store))])
    with TestClient(app, base_url="http://testserver.local") as client:
        client.post("/set", json={"user": "ann"})
        down_from(store, "commit")
        with pytest.raises(WebSocketDisconnect) as closed, client.websocket_connect("/ws") as socket:
            socket.receive_json()
    assert closed.value.detail == "Session store unavailable"
    assert "session store unavailable, answering 503 (CountingStore)" in session_log.text
