"""The app the contract suite drives: one small handler per session operation."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any
from uuid import UUID

import msgspec
from litestar import Litestar, Request, get, post
from litestar.connection import ASGIConnection
from litestar.di import NamedDependency, Provide
from litestar.exceptions import HTTPException
from litestar.handlers import BaseRouteHandler
from litestar.params import FromPath, FromQuery, JSONBody
from litestar.response import Redirect, Response, Stream
from litestar.types import ASGIApp, Receive, Scope, Send

from litestar_flash_sessions import (
    FlashSession,
    Session,
    SessionConfig,
    SessionPlugin,
    SessionTooLargeError,
    UserSessions,
)


class Point(msgspec.Struct):
    x: int
    y: int


class Rendezvous:
    """Holds each arriving request until ``parties`` have arrived: all have loaded the session
    before any commits it, the worst interleaving for lost updates.
    """

    def __init__(self, parties: int = 2) -> None:
        self.parties = parties
        self.arrived = 0
        self.everyone_here = asyncio.Event()

    async def wait(self) -> None:
        self.arrived += 1
        if self.arrived >= self.parties:
            self.everyone_here.set()
        await asyncio.wait_for(self.everyone_here.wait(), 10)


RENDEZVOUS: dict[str, Rendezvous] = {}


class Gate:
    """Holds each request of a race after it acted on its session until the test lets it go:
    every request has loaded the session before any commits, and the test picks the order in
    which they commit (a request commits when its handler returns).
    """

    def __init__(self, roles: list[str]) -> None:
        self.go = {role: asyncio.Event() for role in roles}
        self.arrived: set[str] = set()
        self.everyone_here = asyncio.Event()

    async def wait(self, role: str) -> None:
        self.arrived.add(role)
        if self.arrived == set(self.go):
            self.everyone_here.set()
        await asyncio.wait_for(self.go[role].wait(), 10)


GATES: dict[str, Gate] = {}


def act_on(session: FlashSession, actions: dict[str, Any]) -> dict[str, Any]:
    """Do what a race's request asks, in a fixed order: read, set, flash, read again (``read_after``),
    bind, unbind, rotate, log out, flash and show at once (``then_flash``), and log in again (a
    logout, then a login as the same user in a fresh session)."""
    read = {key: session.get(key) for key in actions.get("read", [])}
    for key, value in actions.get("set", {}).items():
        session.set(key, value)
    for key, value in actions.get("flash", {}).items():
        session.flash(key, value)
    read.update({key: session.get(key) for key in actions.get("read_after", [])})  # flash, then render
    if actions.get("bind"):
        session.bind_user(actions["bind"])
    if actions.get("unbind"):
        session.unbind_user()
    if actions.get("rotate"):
        session.rotate_key()
    if actions.get("logout"):
        session.delete_session()
    for key, value in actions.get("then_flash", {}).items():  # for the fresh session, shown here too
        session.flash(key, value)
        read[key] = session.get(key)
    if actions.get("relogin"):
        user = session.user_id or session.get("user")
        session.delete_session()
        if user is not None:
            session.set("user", user)
            session.bind_user(user)
    return {"read": read, "id": session.id}


@post("/act/{meeting:str}/{role:str}", status_code=200)
async def act(session: Session, meeting: FromPath[str], role: FromPath[str], data: JSONBody[dict[str, Any]]) -> Any:
    result = act_on(session, data)
    await GATES[meeting].wait(role)
    return result


@get("/act/{meeting:str}/{role:str}")
async def act_reading(session: Session, meeting: FromPath[str], role: FromPath[str], read: FromQuery[str]) -> Any:
    result = act_on(session, {"read": [read]})
    await GATES[meeting].wait(role)
    return result


TYPES: dict[str, Any] = {"uuid": UUID, "datetime": datetime, "point": Point, "int": int}


@get("/read/{key:str}")
async def read(session: Session, key: FromPath[str], type: FromQuery[str | None] = None) -> dict[str, Any]:
    value = session.get(key, type=TYPES[type]) if type else session.get(key)
    return {"value": msgspec.to_builtins(value), "id": session.id}


@get("/has/{key:str}")
async def has(session: Session, key: FromPath[str]) -> dict[str, Any]:
    return {"has": session.has(key)}


@get("/id")
async def session_id(session: Session) -> dict[str, Any]:
    return {"id": session.id}


@post("/set", status_code=200)
async def set_values(session: Session, data: JSONBody[dict[str, Any]]) -> dict[str, Any]:
    for key, value in data.items():
        session.set(key, value)
    return {"id": session.id}


@post("/set-together/{meeting:str}", status_code=200)
async def set_together(session: Session, meeting: FromPath[str], data: JSONBody[dict[str, Any]]) -> None:
    for key, value in data.items():
        session.set(key, value)
    await RENDEZVOUS[meeting].wait()


@get("/read-together/{meeting:str}/{key:str}")
async def read_together(session: Session, meeting: FromPath[str], key: FromPath[str]) -> dict[str, Any]:
    value = session.get(key)
    await RENDEZVOUS[meeting].wait()
    return {"value": value}


@post("/set-typed", status_code=200)
async def set_typed(session: Session) -> None:
    session.set("uuid", UUID(int=7))
    session.set("when", datetime(2026, 1, 2, 3, 4, 5).astimezone())
    session.set("point", Point(1, 2))


@post("/flash", status_code=200)
async def flash(session: Session, data: JSONBody[dict[str, Any]]) -> None:
    for key, value in data.items():
        session.flash(key, value)


@post("/flash-category", status_code=200)
async def flash_category(session: Session, data: JSONBody[dict[str, Any]]) -> None:
    """Flash with a category from the client, unchecked (as an app might pass a form's level)."""
    session.flash("m", "hello", category=data["category"])


@post("/flash-redirect")
async def flash_redirect(session: Session) -> Redirect:
    session.flash("message", "saved")
    return Redirect("/read/message")


@post("/set-unencodable", status_code=200)
async def set_unencodable(session: Session) -> dict[str, str]:
    try:
        session.set("bad", object())
    except TypeError as exc:
        return {"error": str(exc)}
    return {"error": ""}


@post("/logout", status_code=200)
async def logout(session: Session) -> dict[str, Any]:
    session.delete_session()
    return {"still_readable": session.get("user")}


@post("/switch-user", status_code=200)
async def switch_user(session: Session, data: JSONBody[dict[str, str]]) -> dict[str, Any]:
    """Log out and in as someone else in one request (Django's ``flush()``, then a login)."""
    session.delete_session()
    unbound = session.user_id
    session.set("user", data["user"])
    session.bind_user(data["user"])
    session.flash("message", f"Welcome, {data['user']}")
    return {"user_id_after_logout": unbound, "cart_still_readable": session.get("cart")}


@post("/clear", status_code=200)
async def clear(session: Session) -> None:
    session.clear()


@post("/to-anonymous", status_code=200)
async def to_anonymous(session: Session) -> None:
    """Drop every value and rotate: a logout that keeps the visitor (Django's ``flush()``)."""
    session.clear()
    session.rotate_key()


@post("/append/{key:str}", status_code=200)
async def append(session: Session, key: FromPath[str], data: JSONBody[Any]) -> None:
    """Change a stored list in place, then set it again (the way the docs ask for)."""
    items = session.get(key)
    items.append(data)
    session.set(key, items)


@post("/grow/{key:str}", status_code=200)
async def grow(session: Session, key: FromPath[str], data: JSONBody[list[Any]]) -> None:
    """Grow a list in place past what ``set`` saw (the dict idiom ``setdefault(...).extend``)."""
    session.setdefault(key, []).extend(data)


def nested(depth: int) -> list[Any]:
    """A list nested ``depth`` deep: deeper than 1,000, more than any stack encodes."""
    outer: list[Any] = []
    inner = outer
    for _ in range(depth):
        inner.append([])
        inner = inner[0]
    return outer


@post("/set-nested/{depth:int}", status_code=200)
async def set_nested(session: Session, depth: FromPath[int]) -> None:
    session.set("deep", nested(depth))


@post("/nest-in-place/{depth:int}", status_code=200)
async def nest_in_place(session: Session, depth: FromPath[int]) -> None:
    """Set a list, then nest it in place deeper than set() saw."""
    session.setdefault("deep", []).append(nested(depth))


@post("/logout-then-nest/{depth:int}", status_code=200)
async def logout_then_nest(session: Session, depth: FromPath[int]) -> str:
    """Log out, then keep a nested value for the fresh session (refused by set(), or not)."""
    session.delete_session()
    try:
        session.set("deep", nested(depth))
    except TypeError:
        return "refused"
    return "accepted"


@post("/logout-then-grow", status_code=200)
async def logout_then_grow(session: Session, data: JSONBody[list[Any]]) -> None:
    """Log out, then keep a list for the fresh session and grow it in place."""
    session.delete_session()
    session.setdefault("recent", []).extend(data)


@post("/rotate", status_code=200)
async def rotate(session: Session) -> None:
    session.rotate_key()


@post("/rotate-state", status_code=200)
async def rotate_state(session: Session, request: Request[Any, Any, Any]) -> None:
    request.state.rotate_session_key = True


def rotating_guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    connection.state.rotate_session_key = True


@post("/rotate-guard", status_code=200, guards=[rotating_guard])
async def rotate_guard(session: Session) -> None:
    session.get("user")


class RotatingMiddleware:
    """A route middleware that asks for rotation before the handler (and the session) runs."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope["state"]["rotate_session_key"] = True
        await self.app(scope, receive, send)


@post("/rotate-middleware", status_code=200, middleware=[RotatingMiddleware])
async def rotate_middleware(session: Session) -> None:
    session.get("user")


@post("/fail")
async def fail(session: Session) -> None:
    session.set("user", "not saved")
    raise RuntimeError("handler failed")


@post("/fail-400")
async def fail_400(session: Session) -> None:
    session.set("user", "saved despite 400")
    raise HTTPException(status_code=400, detail="bad request")


@post("/remember", status_code=200)
async def remember(session: Session, data: JSONBody[dict[str, Any]]) -> None:
    session.set("user", "ann")
    session.set_expiry(data["seconds"])


@post("/set-too-large", status_code=200)
async def set_too_large(session: Session, data: JSONBody[dict[str, Any]]) -> dict[str, Any]:
    try:
        session.set(data["key"], "x" * data["size"])
    except SessionTooLargeError as exc:
        return {"error": str(exc), "has": session.has(data["key"])}
    return {"error": "", "has": session.has(data["key"])}


@get("/stream-set")
async def stream_set(session: Session) -> Stream:
    session.set("before", 1)

    async def body() -> AsyncIterator[str]:
        yield "started;"
        try:
            session.set("after", 2)
        except RuntimeError as exc:
            yield f"refused: {exc}"

    return Stream(body())


@post("/set-cached", status_code=200)
async def set_cached(session: Session) -> Response[str]:
    session.set("user", "ann")
    return Response("ok", headers={"Cache-Control": "public, max-age=60"})


@get("/plain")
async def plain() -> str:
    return "plain"


async def current_user(session: Session) -> str | None:
    return session.get("user")  # type: ignore[no-any-return]


@get("/through-dependency", dependencies={"user": Provide(current_user)})
async def through_dependency(user: NamedDependency[str | None]) -> dict[str, Any]:
    return {"user": user}


@get("/me")
async def me(session: Session) -> dict[str, Any]:
    return {"user": session.user_id, "handle": session.handle, "id": session.id, "values": session.to_dict()}


@get("/my-sessions")
async def my_sessions(session: Session, user_sessions: UserSessions) -> list[dict[str, Any]]:
    if session.user_id is None:
        raise HTTPException(status_code=401)
    found = await user_sessions.list_sessions(session.user_id, current=session.handle)
    return [msgspec.to_builtins(info) for info in found]


@get("/is-flash-session")
async def is_flash_session(session: Session) -> dict[str, bool]:
    return {"is": isinstance(session, FlashSession)}


HANDLERS = [
    remember,
    set_too_large,
    stream_set,
    set_cached,
    act,
    act_reading,
    read,
    has,
    session_id,
    set_values,
    set_typed,
    set_together,
    read_together,
    flash,
    flash_redirect,
    set_unencodable,
    logout,
    switch_user,
    clear,
    to_anonymous,
    append,
    grow,
    set_nested,
    nest_in_place,
    logout_then_nest,
    logout_then_grow,
    flash_category,
    rotate,
    rotate_state,
    rotate_guard,
    rotate_middleware,
    fail,
    fail_400,
    plain,
    through_dependency,
    is_flash_session,
    me,
    my_sessions,
]


def build_app(config: SessionConfig) -> Litestar:
    return Litestar(HANDLERS, plugins=[SessionPlugin(config)])
