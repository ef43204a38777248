"""A bare-bones server-side session, for ``benchmarks.bench`` to measure the least a session costs.

It does only what every server-side session must do per request, the way a hand-written one
would: find the cookie, hash the id into a store key, read a dict, decode the record, hand the
values to the handler, encode them again and write the dict, and add ``Vary: Cookie``. It has
none of the plugin's guarantees: no compare-and-set or lock (concurrent requests lose writes),
no expiry, lifetimes or rotation, no flashes, no size limit, no check that a value can be
stored, no 503. It is not a product, only a yardstick: what it costs over the floor is what
any session of this kind costs on the machine at hand, before it keeps a single guarantee.
"""

from __future__ import annotations

import binascii
import hashlib
import secrets
from contextvars import ContextVar
from typing import Any

import msgspec
from litestar import Litestar, Response, get
from litestar.di import NamedDependency, Provide
from litestar.params import SkipValidation
from litestar.types import ASGIApp, Message, Receive, Scope, Send

COOKIE = b"bare="
_records: dict[str, bytes] = {}
_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder(dict[str, Any]).decode


class BareSession:
    """The values of one request's session, and whether the handler changed them."""

    __slots__ = ("changed", "data", "key")

    def __init__(self, key: str | None, data: dict[str, Any]) -> None:
        self.key = key
        self.data = data
        self.changed = False

    def get(self, name: str) -> Any:
        return self.data.get(name)

    def set(self, name: str, value: Any) -> None:
        self.data[name] = value
        self.changed = True


_current: ContextVar[BareSession | None] = ContextVar("bare_session", default=None)


def _key(session_id: bytes) -> str:
    return binascii.b2a_base64(hashlib.sha256(session_id).digest())[:43].decode()


def _load(scope: Scope) -> BareSession:
    for name, value in scope["headers"]:
        if name == b"cookie":
            start = value.find(COOKIE)
            if start >= 0:
                key = _key(value[start + len(COOKIE) : start + len(COOKIE) + 43])
                record = _records.get(key)
                if record is not None:
                    return BareSession(key, _decode(record))
    return BareSession(None, {})


class BareSessionMiddleware:
    """Load the session before the route runs; store it when the response starts."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        session = _load(scope)

        async def send_saving(message: Message) -> None:
            if message["type"] == "http.response.start":
                if session.changed and session.key is not None:
                    _records[session.key] = _encode(session.data)
                message["headers"] = [*message["headers"], (b"vary", b"Cookie")]
            await send(message)

        token = _current.set(session)
        try:
            await self.app(scope, receive, send_saving)
        finally:
            _current.reset(token)


def provide_bare_session() -> BareSession:
    session = _current.get()
    assert session is not None
    return session


_BARE_DEPENDENCIES = {"session": Provide(provide_bare_session, sync_to_thread=False)}


@get("/", dependencies=_BARE_DEPENDENCIES, middleware=[BareSessionMiddleware])
async def bare_read_write(session: NamedDependency[SkipValidation[BareSession]]) -> str:
    session.set("visits", (session.get("visits") or 0) + 1)
    session.set("user", "ann")
    return "ok"


@get("/login")
async def bare_login() -> Response[str]:
    session_id = secrets.token_urlsafe(32)
    _records[_key(session_id.encode())] = _encode({"user": "ann"})
    return Response("ok", headers={"set-cookie": f"{COOKIE.decode()}{session_id}; Path=/; HttpOnly"})


def bare_session_app() -> Litestar:
    """The read+write handler (``GET /``) on the bare-bones session, and ``GET /login`` to start one."""
    return Litestar([bare_read_write, bare_login])
