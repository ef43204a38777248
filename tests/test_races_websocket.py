"""A WebSocket handler's commits after the handshake race HTTP requests of the same session like
any other commit: forced with a gate, in both orders, on every server-side store.

The socket is driven at the ASGI level in the test's own event loop (Litestar's TestClient runs
the app in a thread of its own, where a gate of the test's loop cannot hold it).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from litestar import Litestar, WebSocket, websocket
from litestar.params import FromPath

from litestar_flash_sessions import Session, SessionConfig, SessionPlugin
from litestar_flash_sessions.commit import store_key
from litestar_flash_sessions.record import Live
from litestar_flash_sessions.stores import SessionStore
from tests.app import GATES, HANDLERS, Gate
from tests.conftest import in_loop_client
from tests.test_races import Browser, cookie_of, expires_cookie

ORDERS = ["socket-first", "request-first"]


@websocket("/ws-act/{meeting:str}")
async def ws_act(socket: WebSocket[Any, Any, Any], session: Session, meeting: FromPath[str]) -> None:
    await socket.accept()
    session.set("ws", 1)  # a change after the handshake: saved when the handler next sends
    await GATES[meeting].wait("socket")
    await socket.send_text("sent")
    await socket.close()


@websocket("/ws-show/{meeting:str}")
async def ws_show(socket: WebSocket[Any, Any, Any], session: Session, meeting: FromPath[str]) -> None:
    await socket.accept()
    session.get("m"), session.get("o")  # the socket shows both flashes
    await GATES[meeting].wait("socket")
    await socket.send_text("sent")
    await socket.close()


class Socket:
    """One WebSocket connection to ``app``, driven by hand."""

    def __init__(self, app: Litestar, path: str, cookie: str) -> None:
        self.inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        scope = {
            "type": "websocket",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "scheme": "ws",
            "server": ("testserver.local", 80),
            "client": ("127.0.0.1", 50000),
            "root_path": "",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "headers": [(b"host", b"testserver.local"), (b"cookie", f"session={cookie}".encode())],
            "subprotocols": [],
            "state": {},
        }
        self.inbox.put_nowait({"type": "websocket.connect"})
        self.task = asyncio.create_task(app(scope, self.inbox.get, self.outbox.put))  # type: ignore[arg-type]

    async def next(self) -> dict[str, Any]:
        return await asyncio.wait_for(self.outbox.get(), 10)

    async def say(self, text: str) -> None:
        await self.inbox.put({"type": "websocket.receive", "text": text})

    async def finish(self) -> None:
        await self.inbox.put({"type": "websocket.disconnect", "code": 1000})
        await asyncio.wait_for(self.task, 10)


@asynccontextmanager
async def site(store: SessionStore) -> AsyncIterator[tuple[Litestar, Browser]]:
    app = Litestar([*HANDLERS, ws_act, ws_show], plugins=[SessionPlugin(SessionConfig(store=store))])
    async with app.lifespan(), in_loop_client(app) as client:
        yield app, Browser(client)


async def race(app: Litestar, browser: Browser, actions: dict[str, Any], order: str, route: str = "ws-act") -> Any:
    """A socket (of ``route``) and an HTTP request of the browser's session load it,
    act on it, wait; then they commit in ``order``. Returns the HTTP response."""
    meeting = uuid.uuid4().hex
    gate = GATES[meeting] = Gate(["socket", "request"])
    assert browser.cookie is not None
    socket = Socket(app, f"/{route}/{meeting}", browser.cookie)
    try:
        assert (await socket.next())["type"] == "websocket.accept"
        request = asyncio.create_task(browser.request("POST", f"/act/{meeting}/request", actions))
        await asyncio.wait_for(gate.everyone_here.wait(), 10)
        if order == "socket-first":
            gate.go["socket"].set()
            assert sent_text(await socket.next()) == "sent"
            gate.go["request"].set()
            response = await request
        else:
            gate.go["request"].set()
            response = await request
            gate.go["socket"].set()
            assert sent_text(await socket.next()) == "sent"
        assert (await socket.next())["type"] == "websocket.close"
        await socket.finish()
        return response
    finally:
        del GATES[meeting]


@pytest.mark.parametrize("order", ORDERS)
async def test_a_socket_write_and_a_request_write_both_stay(server_store: SessionStore, order: str) -> None:
    async with site(server_store) as (app, browser):
        await browser.start({"user": "ann"})
        response = await race(app, browser, {"set": {"http": 1}}, order)
        assert response.status_code == 200
        assert await browser.values(browser.cookie, "user", "ws", "http") == {"user": "ann", "ws": 1, "http": 1}


@pytest.mark.parametrize("order", ORDERS)
async def test_a_logout_beats_a_socket_write(server_store: SessionStore, order: str) -> None:
    async with site(server_store) as (app, browser):
        old = await browser.start({"user": "ann"})
        response = await race(app, browser, {"logout": True}, order)
        assert expires_cookie(response)
        assert await browser.live_id(old) is None, "the socket's commit did not bring the session back"
        raw = await server_store.get(store_key(old), None)
        assert raw is None or not isinstance(_decoded(raw), Live)


@pytest.mark.parametrize("order", ORDERS)
async def test_a_flash_a_socket_showed_is_consumed_whoever_showed_another_first(
    server_store: SessionStore, order: str
) -> None:
    # A socket's message cannot become a retry: what it showed is consumed, even when a request
    # showed one of those flashes first (that one is shown twice: docs/session.md, WebSockets).
    async with site(server_store) as (app, browser):
        await browser.start({"user": "ann"}, flashes={"m": "hello", "o": "other"})
        response = await race(app, browser, {"read": ["m"]}, order, route="ws-show")
        assert response.status_code == (409 if order == "socket-first" else 200)
        assert await browser.values(browser.cookie, "m", "o") == {"m": None, "o": None}, "o would show again"


@pytest.mark.parametrize("order", ORDERS)
async def test_a_socket_write_follows_a_rotation(server_store: SessionStore, order: str) -> None:
    async with site(server_store) as (app, browser):
        old = await browser.start({"user": "ann"})
        response = await race(app, browser, {"rotate": True}, order)
        new = cookie_of(response)
        assert new not in (None, old)
        assert await browser.live_id(old) is None
        assert await browser.values(new, "user", "ws") == {"user": "ann", "ws": 1}


def sent_text(message: dict[str, Any]) -> str | None:
    assert message["type"] == "websocket.send", message
    return message.get("text")  # type: ignore[no-any-return]


def _decoded(raw: bytes) -> object:
    from litestar_flash_sessions.record import decode

    return decode(raw)


@websocket("/ws-steps")
async def ws_steps(socket: WebSocket[Any, Any, Any], session: Session) -> None:
    await socket.accept()
    while (key := await socket.receive_text()) != "end":
        try:
            session.set(key, 1)
        except RuntimeError:
            await socket.send_text("refused")
        else:
            await socket.send_text("saved")  # commits the set first
    await socket.close()


@pytest.mark.parametrize("ending", ["/logout", "/rotate", "revocation"])
async def test_a_socket_left_open_cannot_bring_back_a_session_ended_meanwhile(
    server_store: SessionStore, ending: str
) -> None:
    # The session ends (a logout, a revocation, or a rotation: its old id must stop working)
    # while a socket of it is open, after the socket's first commit; then the tombstone left at
    # the old key goes (it expires, or a full MemoryStore evicts it). The socket's next commit
    # must not write the session back under the old id: that cookie would work again.
    plugin = SessionPlugin(SessionConfig(store=server_store))
    app = Litestar([*HANDLERS, ws_steps], plugins=[plugin])
    async with app.lifespan(), in_loop_client(app) as client:
        browser = Browser(client)
        await browser.start({"user": "ann"})
        response = await browser.request("POST", "/switch-user", {"user": "ann"})  # a login: bound to ann
        old = browser.cookie = cookie_of(response)
        assert old is not None
        socket = Socket(app, "/ws-steps", old)
        assert (await socket.next())["type"] == "websocket.accept"
        await socket.say("first")
        assert sent_text(await socket.next()) == "saved"
        if ending == "revocation":
            assert await plugin.user_sessions.revoke_all("ann") == 1
        else:
            assert (await browser.request("POST", ending)).status_code == 200
        await server_store.delete(store_key(old))  # the tombstone expires
        await socket.say("second")
        assert sent_text(await socket.next()) == "saved"  # (to the session that followed, if any)
        await socket.say("third")
        assert sent_text(await socket.next()) == "refused", "later changes have nowhere to go"
        await socket.say("end")
        assert (await socket.next())["type"] == "websocket.close"
        await socket.finish()
        assert await browser.live_id(old) is None, "the old cookie works again"
        assert await server_store.get(store_key(old), None) is None
