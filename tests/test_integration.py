"""Litestar's own tools on this plugin: request.session, SessionAuth, FlashPlugin, and Litestar's
session middleware next to it (SPEC 10)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import pytest
from litestar import Litestar, Request, WebSocket, get, post, websocket, websocket_listener
from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException
from litestar.handlers import BaseRouteHandler
from litestar.middleware.session.server_side import ServerSideSessionConfig
from litestar.params import FromPath, JSONBody
from litestar.plugins.flash import FlashConfig, FlashPlugin, flash
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.plugins.mako import MakoTemplateEngine
from litestar.plugins.minijinja import MiniJinjaTemplateEngine
from litestar.response import Redirect, Template
from litestar.security.session_auth import SessionAuth
from litestar.template import TemplateConfig

from litestar_flash_sessions import Session, SessionConfig, SessionPlugin
from litestar_flash_sessions.record import Live, decode
from litestar_flash_sessions.stores import MemoryStore
from tests.conftest import RecordingHandler, in_loop_client

TEMPLATES = {
    "jinja": ("index.html", "{% for m in get_flashes() %}[{{ m.category }}:{{ m.message }}]{% endfor %}"),
    "minijinja": ("index.j2", "{% for m in get_flashes() %}[{{ m.category }}:{{ m.message }}]{% endfor %}"),
    "mako": ("index.mako", "% for m in get_flashes():\n[${m['category']}:${m['message']}]\n% endfor\n"),
}


async def retrieve_user(session: dict[str, Any], connection: ASGIConnection[Any, Any, Any, Any]) -> Any:
    return {"email": session["email"]} if "email" in session else None


def admins_only(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    if not connection.user["email"].endswith("@admin.example"):
        raise NotAuthorizedException("admins only")


@post("/login")
async def login(request: Request[Any, Any, Any], data: JSONBody[dict[str, str]]) -> Redirect:
    request.set_session({"email": data["email"]})
    flash(request, "Login successful", "success")
    flash(request, f"Welcome back, {data['email']}", "info")
    return Redirect("/")


@post("/logout")
async def logout(request: Request[Any, Any, Any]) -> Redirect:
    request.clear_session()
    return Redirect("/")


@post("/logout-noted")
async def logout_noted(request: Request[Any, Any, Any], session: Session) -> Redirect:
    # Not request.clear_session(): it leaves request.session Empty, and Litestar's flash() fails on it.
    session.delete_session()
    flash(request, "Logged out", "info")
    return Redirect("/")


@get("/me")
async def me(request: Request[Any, Any, Any]) -> dict[str, Any]:
    return {"user": request.user, "session_email": request.session.get("email")}


@get("/admin", guards=[admins_only])
async def admin(request: Request[Any, Any, Any]) -> str:
    return f"Admin {request.user['email']}"


@get("/typed")
async def typed(session: Session, request: Request[Any, Any, Any]) -> dict[str, Any]:
    return {"same": session is request.session, "email": session.get("email")}


def litestar_docs_app(tmp_path: Path, engine: str) -> tuple[Litestar, MemoryStore]:
    """An app as Litestar's docs teach it (SessionAuth, FlashPlugin, guards), with this plugin."""
    name, text = TEMPLATES[engine]
    (tmp_path / name).write_text(text)

    @get("/")
    async def index() -> Template:
        return Template(template_name=name)

    store = MemoryStore()
    plugin = SessionPlugin(SessionConfig(store=store))
    auth = SessionAuth[Any, Any](
        retrieve_user_handler=retrieve_user,
        session_backend_config=plugin.session_backend_config,
        exclude=["/login", "/logout", "^/$", "/schema"],
    )
    engine_class = {"jinja": JinjaTemplateEngine, "mako": MakoTemplateEngine, "minijinja": MiniJinjaTemplateEngine}[
        engine
    ]
    template_config = TemplateConfig(directory=tmp_path, engine=engine_class)
    app = Litestar(
        [index, login, logout, logout_noted, me, admin, typed],
        plugins=[plugin, FlashPlugin(FlashConfig(template_config))],
        template_config=template_config,
        on_app_init=[auth.on_app_init],
    )
    return app, store


@pytest.mark.parametrize("engine", ["jinja", "mako", "minijinja"])
async def test_an_app_written_the_litestar_way_works_on_this_plugin(tmp_path: Path, engine: str) -> None:
    app, store = litestar_docs_app(tmp_path, engine)
    async with app.lifespan(), in_loop_client(app) as client:
        assert (await client.get("/me")).status_code == 401, "SessionAuth: no session, no user"
        response = await client.post("/login", json={"email": "ann@admin.example"}, follow_redirects=False)
        assert response.status_code == 302
        first_id = client.cookies["session"]
        shown = "".join((await client.get("/")).text.split())
        assert shown == "[success:Loginsuccessful][info:Welcomeback,ann@admin.example]"
        assert "[" not in (await client.get("/")).text, "shown once"
        assert (await client.get("/me")).json() == {
            "user": {"email": "ann@admin.example"},
            "session_email": "ann@admin.example",
        }
        assert (await client.get("/admin")).text == "Admin ann@admin.example"
        assert (await client.get("/typed")).json() == {"same": True, "email": "ann@admin.example"}
        await client.post("/login", json={"email": "bob@example.com"})
        assert client.cookies["session"] != first_id, "replacing the session (a login) rotates the id"
        assert (await client.get("/admin")).status_code == 401, "a guard on the user"
        await client.post("/logout")
        assert (await client.get("/me")).status_code == 401
        assert len([raw for raw, *_ in store._records.values() if b"bob" in raw]) == 0
        await client.post("/login", json={"email": "cy@example.com"})
        "".join((await client.get("/")).text.split())  # the login's flashes, shown
        await client.post("/logout-noted")
        assert "".join((await client.get("/")).text.split()) == "[info:Loggedout]", "Litestar's flash after a logout"
        assert (await client.get("/me")).status_code == 401, "logged out all the same"
        assert len([raw for raw, *_ in store._records.values() if b"cy@" in raw]) == 0


def test_next_to_litestar_session_middleware_with_the_same_cookie_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="Litestar's own session middleware"):
        Litestar([], middleware=[ServerSideSessionConfig().middleware], plugins=[SessionPlugin()])
    Litestar([], middleware=[ServerSideSessionConfig(key="other").middleware], plugins=[SessionPlugin()])


@post("/flash-more")
async def flash_more(session: Session) -> None:
    session.flash("m", "one", category="info")
    session.flash("m", "two", category="error")
    session.flash("other", "three")


@get("/peek-then-take")
async def peek_then_take(session: Session) -> dict[str, Any]:
    peeked = [list(m) for m in session.peek_flashes(category="error")]
    taken = [list(m) for m in session.flashes("m")]
    return {"peeked": peeked, "taken": taken, "left": [list(m) for m in session.peek_flashes()]}


@get("/show-and-keep")
async def show_and_keep(session: Session) -> dict[str, Any]:
    shown = [m.value for m in session.flashes()]
    session.keep()
    session.flash("now", "this request only", now=True)
    return {"shown": shown, "now": [m.value for m in session.peek_flashes("now")]}


@post("/logout-with-flash")
async def logout_with_flash(session: Session) -> None:
    session.delete_session()
    session.flash("message", "Logged out", category="info")


@post("/set-user")
async def set_user(session: Session) -> None:
    session["user"] = "ann"


@get("/mapping")
async def mapping(session: Session) -> dict[str, Any]:
    return {"keys": list(session), "in": "user" in session, "len": len(session), "items": dict(session.items())}


async def test_flash_appends_with_categories_peek_keep_now_and_after_logout() -> None:
    handlers = [flash_more, peek_then_take, show_and_keep, logout_with_flash, set_user, mapping]
    app = Litestar(handlers, plugins=[SessionPlugin(SessionConfig(store=MemoryStore()))])
    async with app.lifespan(), in_loop_client(app) as client:
        await client.post("/flash-more")
        body = (await client.get("/peek-then-take")).json()
        assert body["peeked"] == [["m", "two", "error"]]
        assert body["taken"] == [["m", "one", "info"], ["m", "two", "error"]]
        assert body["left"] == [["other", "three", None]]
        assert (await client.get("/show-and-keep")).json() == {"shown": ["three"], "now": ["this request only"]}
        assert (await client.get("/show-and-keep")).json()["shown"] == ["three"], "kept one more request"
        await client.post("/set-user")
        assert (await client.get("/mapping")).json() == {
            "keys": ["user"],
            "in": True,
            "len": 1,
            "items": {"user": "ann"},
        }
        old = client.cookies["session"]
        response = await client.post("/logout-with-flash")
        assert client.cookies["session"] != old, "a fresh session, not the old one"
        assert "Max-Age=0" not in response.headers["set-cookie"]
        assert (await client.get("/show-and-keep")).json()["shown"] == ["Logged out"]
        assert (await client.get("/mapping")).json()["keys"] == [], "the old values are gone"


@websocket("/ws-hello")
async def ws_hello(socket: WebSocket[Any, Any, Any], session: Session) -> None:
    await socket.accept()
    await socket.send_text(f"hello {session.get('user') or 'anonymous'}")
    session.set("visits", (session.get("visits") or 0) + 1)
    await socket.send_text("counted")
    await socket.close()


@websocket("/ws-read")
async def ws_read(socket: WebSocket[Any, Any, Any], session: Session) -> None:
    await socket.accept()
    await socket.send_text(f"hello {session.get('user') or 'anonymous'}")
    try:
        session.set("visits", 1)
    except RuntimeError:
        await socket.send_text("read-only after the handshake")
    await socket.close()


@websocket_listener("/ws-listen")
async def ws_listen(data: str, session: Session) -> str:
    session.set("last", data)
    return f"{session.get('user')}: {data}"


@pytest.mark.parametrize("store_kind", ["memory", "cookie"])
def test_websocket_handlers_get_the_session_and_save_what_they_change(store_kind: str) -> None:
    from litestar.testing import TestClient

    from litestar_flash_sessions.stores import CookieStore
    from tests.harness import SECRET

    store = MemoryStore() if store_kind == "memory" else CookieStore(SECRET)
    handlers = [ws_hello, ws_read, ws_listen, set_user, mapping]
    app = Litestar(handlers, plugins=[SessionPlugin(SessionConfig(store=store))])
    with TestClient(app) as client:
        with client.websocket_connect("/ws-read") as ws:
            assert ws.receive_text() == "hello anonymous"
        client.post("/set-user")
        if store_kind == "cookie":  # the session lives in the cookie: after the handshake it cannot change
            with client.websocket_connect("/ws-read") as ws:
                assert ws.receive_text() == "hello ann"
                assert ws.receive_text() == "read-only after the handshake"
        else:
            with client.websocket_connect("/ws-hello") as ws:
                assert ws.receive_text() == "hello ann"
                assert ws.receive_text() == "counted"
            assert client.get("/mapping").json()["items"] == {"user": "ann", "visits": 1}, "saved when it sent"
            with client.websocket_connect("/ws-listen") as ws:
                ws.send_text("hi")
                assert ws.receive_text() == "ann: hi"
            assert client.get("/mapping").json()["items"]["last"] == "hi"


def test_a_websocket_outside_cookie_path_gets_a_fresh_session_that_is_never_saved() -> None:
    # As an HTTP request there: the browser would not send the cookie back, so nothing is stored
    # and the handshake sets no cookie.
    from litestar.testing import TestClient

    store = MemoryStore()
    app = Litestar([ws_hello], plugins=[SessionPlugin(SessionConfig(store=store, cookie_path="/app"))])
    with TestClient(app) as client:
        with client.websocket_connect("/ws-hello") as ws:
            assert ws.receive_text() == "hello anonymous"
            assert ws.receive_text() == "counted"
        assert "session" not in client.cookies
    assert len(store) == 0


def session_admins_only(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    if connection.session.get("role") != "admin":
        raise NotAuthorizedException("admins only")


@get("/guarded-by-session", guards=[session_admins_only])
async def guarded_by_session(session: Session) -> dict[str, Any]:
    return {"user": session.get("user")}


@post("/become-admin")
async def become_admin(session: Session) -> None:
    session.set("role", "admin")


async def test_a_guard_reads_the_session_the_handler_then_gets() -> None:
    app = Litestar([guarded_by_session, become_admin], plugins=[SessionPlugin()])
    async with app.lifespan(), in_loop_client(app) as client:
        assert (await client.get("/guarded-by-session")).status_code == 401
        await client.post("/become-admin")
        response = await client.get("/guarded-by-session")
        assert response.status_code == 200
        assert response.json() == {"user": None}


@get("/session-as-dict")
async def session_as_dict(request: Request[Any, Any, Any], session: Session) -> dict[str, Any]:
    return {"empty": request.session == {}, "non_empty": request.session != {}, "mapping": isinstance(session, Mapping)}


@get("/return-session")
async def return_session(request: Request[Any, Any, Any], session: Session) -> Any:
    return request.session


@get("/return-session-from-none")
async def return_session_from_none(request: Request[Any, Any, Any], session: Session) -> None:
    return request.session  # type: ignore[return-value]  # Litestar sends it all the same


@dataclass
class LoggedIn:
    user_id: str
    roles: list[str]


class Cart(msgspec.Struct):
    items: list[str]


SET_SESSION_DATA: dict[str, Any] = {
    "dataclass": LoggedIn("42", ["admin"]),
    "struct": Cart(["apple"]),
    "too-large": {"blob": "x" * 100_000},
    "unstorable": {"when": object()},
    "not-a-mapping": 42,
    "int-keys": {1: "a"},
}


@post("/set-session/{kind:str}", status_code=200)
async def set_session_of(request: Request[Any, Any, Any], session: Session, kind: FromPath[str]) -> str:
    request.set_session(SET_SESSION_DATA[kind])
    return "set"


async def test_request_session_compares_and_serialises_as_litestar_s_dict() -> None:
    app = Litestar([session_as_dict, return_session, return_session_from_none, set_user], plugins=[SessionPlugin()])
    async with app.lifespan(), in_loop_client(app) as client:
        assert (await client.get("/session-as-dict")).json() == {"empty": True, "non_empty": False, "mapping": True}
        assert (await client.get("/return-session")).json() == {}
        await client.post("/set-user")
        assert (await client.get("/session-as-dict")).json() == {"empty": False, "non_empty": True, "mapping": True}
        assert (await client.get("/return-session")).json() == {"user": "ann"}
        assert (await client.get("/return-session-from-none")).json() == {"user": "ann"}


async def test_set_session_takes_data_models_and_answers_bad_values_as_session_set_does(
    session_log: RecordingHandler,
) -> None:
    store = MemoryStore()
    app = Litestar([set_session_of, set_user, mapping], plugins=[SessionPlugin(SessionConfig(store=store))])
    async with app.lifespan(), in_loop_client(app) as client:
        await client.post("/set-user")
        first = client.cookies["session"]
        assert (await client.post("/set-session/dataclass")).text == "set"
        assert client.cookies["session"] != first, "replacing the session (a login) rotates the id"
        assert (await client.get("/mapping")).json()["items"] == {"user_id": "42", "roles": ["admin"]}
        assert (await client.post("/set-session/int-keys")).status_code == 200
        assert (await client.get("/mapping")).json()["items"] == {"1": "a"}, "as Litestar stores it (JSON)"
        await client.post("/set-session/struct")
        assert (await client.get("/mapping")).json()["items"] == {"items": ["apple"]}
        kept = client.cookies["session"]
        for kind, status in [("too-large", 413), ("unstorable", 400), ("not-a-mapping", 500)]:
            response = await client.post(f"/set-session/{kind}")
            assert response.status_code == status, kind
            assert response.json()["status_code"] == status, "an error body, not the handler's"
            assert "set-cookie" not in response.headers
            assert client.cookies["session"] == kept
            assert (await client.get("/mapping")).json()["items"] == {"items": ["apple"]}, "nothing saved"
        assert "request.set_session() takes a mapping or a data model, got int" in session_log.text


async def test_under_session_auth_any_route_may_return_request_session(tmp_path: Path) -> None:
    @get("/whole-session")
    async def whole_session(request: Request[Any, Any, Any]) -> Any:
        return request.session  # a route that does not take the session: SessionAuth loads it

    app, _ = litestar_docs_app(tmp_path, "jinja")
    app.register(whole_session)
    async with app.lifespan(), in_loop_client(app) as client:
        await client.post("/login", json={"email": "ann@admin.example"})
        response = await client.get("/whole-session")
        assert response.status_code == 200
        assert response.json()["email"] == "ann@admin.example"


def live_records(store: MemoryStore) -> list[Live]:
    """The live sessions a memory store holds (not tombstones, not users' indexes)."""
    found = []
    for raw, *_ in store._records.values():
        try:
            record = decode(raw)
        except msgspec.ValidationError:
            continue  # a user's index
        if isinstance(record, Live):
            found.append(record)
    return found


@websocket("/ws-switch")
async def ws_switch(socket: WebSocket[Any, Any, Any], session: Session) -> None:
    session.delete_session()
    session.set("before", 1)  # at the handshake: into the fresh session
    session.bind_user("bob")
    session.flash("m", "switched")
    await socket.accept()
    session.set("after", 2)  # after it: saved when the handler sends, into that session too
    await socket.send_text(" ".join(message.value for message in session.flashes("m")))
    await socket.close()


async def test_a_websocket_s_changes_after_delete_session_go_to_the_fresh_session() -> None:
    from litestar.testing import TestClient

    from litestar_flash_sessions import UserSessionManager

    store = MemoryStore()
    config = SessionConfig(store=store)
    app = Litestar([ws_switch, set_user], plugins=[SessionPlugin(config)])
    with TestClient(app) as client:
        client.post("/set-user")
        with client.websocket_connect("/ws-switch") as ws:
            assert ws.receive_text() == "switched"
    live = live_records(store)
    assert [record.data for record in live] == [{"before": 1, "after": 2}], "a change was lost, or went elsewhere"
    assert live[0].flashes == [], "the flash shown on the socket is pending still"
    listed = await UserSessionManager(config).list_sessions("bob")
    assert [info.handle for info in listed] == [live[0].handle], "bob's session is missing from his index"


@websocket("/ws-new")
async def ws_new(socket: WebSocket[Any, Any, Any], session: Session) -> None:
    session.set("before", 1)  # a visitor without a session: created at the handshake
    await socket.accept()
    for step in (2, 3):
        session.set(f"after{step}", step)  # saved at each send, into the session the cookie names
        await socket.send_text("saved")
    await socket.close()


@websocket("/ws-late-id-change")
async def ws_late_id_change(socket: WebSocket[Any, Any, Any], session: Session) -> None:
    await socket.accept()
    refused = []
    for change in (session.rotate_key, lambda: session.bind_user("bob"), session.unbind_user, session.delete_session):
        try:
            change()
        except RuntimeError:
            refused.append("refused")
    await socket.send_text(" ".join(refused))
    await socket.close()


@websocket("/ws-late-flash")
async def ws_late_flash(socket: WebSocket[Any, Any, Any], session: Session) -> None:
    await socket.accept()
    try:
        shown = [message.value for message in session.flashes()]
    except RuntimeError:
        shown = ["read-only"]
    await socket.send_text(" ".join(shown))
    await socket.close()


@post("/flash-hello")
async def flash_hello(session: Session) -> None:
    session.flash("m", "hello")


def test_a_websocket_s_session_made_at_the_handshake_takes_the_later_changes() -> None:
    from litestar.testing import TestClient

    store = MemoryStore()
    app = Litestar([ws_new], plugins=[SessionPlugin(SessionConfig(store=store))])
    with TestClient(app) as client, client.websocket_connect("/ws-new") as ws:
        assert [ws.receive_text(), ws.receive_text()] == ["saved", "saved"]
    assert [record.data for record in live_records(store)] == [{"before": 1, "after2": 2, "after3": 3}], (
        "later changes went where no cookie leads"
    )


@websocket("/ws-litestar-api/{action:str}")
async def ws_litestar_api(socket: WebSocket[Any, Any, Any], session: Session, action: FromPath[str]) -> None:
    if action == "clear":
        socket.clear_session()  # Litestar's own API, at the handshake: a logout
    elif action == "set":
        socket.set_session({"user": "bob"})
    await socket.accept()
    if action == "clear-late":
        socket.clear_session()  # after the handshake the id cannot change: the socket's next send raises
    elif action == "set-late":
        socket.set_session({"user": "bob"})
    try:
        await socket.send_text("sent")
    except RuntimeError:
        await socket.send_text("refused")
    await socket.close()


def test_a_websocket_s_set_session_and_clear_session_are_applied() -> None:
    from litestar.testing import TestClient

    for action, sent, left in [
        ("set", "sent", [{"user": "bob"}]),
        ("clear-late", "refused", [{"user": "ann"}]),
        ("set-late", "refused", [{"user": "ann"}]),
        ("clear", "sent", []),
    ]:
        store = MemoryStore()
        app = Litestar([ws_litestar_api, set_user], plugins=[SessionPlugin(SessionConfig(store=store))])
        with TestClient(app) as client:
            client.post("/set-user")
            with client.websocket_connect(f"/ws-litestar-api/{action}") as ws:
                assert ws.receive_text() == sent, action
        assert [record.data for record in live_records(store)] == left, action


@pytest.mark.parametrize("store_kind", ["memory", "cookie"])
def test_after_a_websocket_s_handshake_the_id_cannot_change_nor_a_cookie_flash_be_read(store_kind: str) -> None:
    from litestar.testing import TestClient

    from litestar_flash_sessions.stores import CookieStore
    from tests.harness import SECRET

    store = MemoryStore() if store_kind == "memory" else CookieStore(SECRET)
    app = Litestar(
        [ws_late_id_change, ws_late_flash, set_user, flash_hello, mapping],
        plugins=[SessionPlugin(SessionConfig(store=store))],
    )
    with TestClient(app) as client:
        client.post("/set-user")
        with client.websocket_connect("/ws-late-id-change") as ws:
            assert ws.receive_text() == "refused refused refused refused"
        assert client.get("/mapping").json()["items"] == {"user": "ann"}, "the session is as it was"
        client.post("/flash-hello")
        with client.websocket_connect("/ws-late-flash") as ws:
            shown = ws.receive_text()
        if store_kind == "cookie":  # after the handshake no cookie can save that it was read
            assert shown == "read-only"
        else:
            assert shown == "hello"
            with client.websocket_connect("/ws-late-flash") as ws:
                assert ws.receive_text() == "", "shown once"


@websocket("/ws-anonymous")
async def ws_anonymous(socket: WebSocket[Any, Any, Any], session: Session) -> None:
    session.flash("note", "for this socket", now=True)  # never stored: readable on a read-only socket
    await socket.accept()  # nothing stored at the handshake: no cookie names a session
    await socket.send_text(" ".join(message.value for message in session.flashes("note")))
    try:
        session.set("n", 1)
    except RuntimeError as exc:
        await socket.send_text(str(exc))
    await socket.close()


@websocket("/ws-flash-now")
async def ws_flash_now(socket: WebSocket[Any, Any, Any], session: Session) -> None:
    await socket.accept()
    session.flash("note", "for this socket", now=True)
    session.set("a", 1)
    await socket.send_text("saved")  # a commit, after which the socket goes on in the stored session
    await socket.send_text(" ".join(message.value for message in session.flashes("note")))
    await socket.close()


def test_a_websocket_says_why_a_change_after_the_handshake_cannot_be_saved_and_keeps_its_own_flashes() -> None:
    from litestar.testing import TestClient

    from tests.test_plugin import CountingStore

    store = CountingStore()
    app = Litestar(
        [ws_anonymous, ws_flash_now, ws_litestar_api, set_user], plugins=[SessionPlugin(SessionConfig(store=store))]
    )
    with TestClient(app) as client:
        with client.websocket_connect("/ws-anonymous") as ws:
            assert ws.receive_text() == "for this socket"
            refused = ws.receive_text()
        assert "after the WebSocket handshake" in refused
        assert "before accept()" in refused
        assert live_records(store) == [], "no session no cookie leads to"
        client.post("/set-user")
        store.calls.clear()
        with client.websocket_connect("/ws-litestar-api/none") as ws:
            assert ws.receive_text() == "sent"
        assert store.calls == ["get"], "a handshake that changes nothing reads the store once"
        with client.websocket_connect("/ws-flash-now") as ws:
            assert [ws.receive_text(), ws.receive_text()] == ["saved", "for this socket"]
