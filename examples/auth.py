"""Log in with Litestar's own tools on this plugin: ``SessionAuth``, ``FlashPlugin`` and Jinja.

Run it with ``python examples/auth.py`` (http://127.0.0.1:8003). Choose the store with
``--store NAME`` or ``SESSION_STORE=NAME``: memory, cookie, sqlite (the default, in
``./auth-sessions.db``, or the file ``SESSION_SQLITE_PATH`` names, so sessions survive a restart),
postgres, redis, mongo or webdis. The server stores read their URL from ``POSTGRES_URL``,
``REDIS_URL``, ``MONGO_URL`` or ``WEBDIS_URL``; the cookie store its secret from ``SESSION_SECRET``
(without it, a random one per process, with a warning).

- ``GET /``: the pending flash messages (``<ul id="flashes">``), who is logged in
  (``<span id="user">``) and the login or logout form.
- ``POST /login`` (form fields ``email`` and ``password``; the password is ``correct``): logs in,
  rotating the session's id, and redirects to ``/``.
- ``GET /admin``: ``Admin EMAIL``, or 401 when nobody is logged in (``SessionAuth``).
- ``POST /logout``: deletes the session, flashes "Logged out" and redirects to ``/``.
- ``WS /ws``: sends ``hello EMAIL`` (or ``hello anonymous``) and closes.
- ``GET /sessions``: the logged-in user's sessions, as JSON (``handle``, ``current``,
  ``created_at``, ``last_seen``, ``user_agent``); 401 when nobody is logged in.
- ``POST /sessions/revoke-others``: logs the user's other devices out (204).
- ``POST /sessions/{handle}/revoke``: logs that session out (204; 404 if it is not the user's).
"""

from __future__ import annotations

import argparse
import logging
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader
from litestar import Litestar, MediaType, Request, WebSocket, get, post, websocket
from litestar.connection import ASGIConnection
from litestar.exceptions import NotFoundException, ValidationException
from litestar.params import FromPath, URLEncodedBody
from litestar.plugins.flash import FlashConfig, FlashPlugin, flash
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.response import Redirect, Template
from litestar.security.session_auth import SessionAuth
from litestar.template import TemplateConfig

from litestar_flash_sessions import Session, SessionConfig, SessionPlugin, UserSessions
from litestar_flash_sessions.backend import SessionBackend
from litestar_flash_sessions.session import MESSAGES_KEY

CORRECT_PASSWORD = "correct"
MAX_EMAIL_LENGTH = 256
TEMPLATES = Path(__file__).parent / "templates"
DEFAULT_SQLITE_PATH = "auth-sessions.db"
PUBLIC_PATHS = ["^/$", "^/login$", "^/logout$", "^/ws$", "^/schema"]
"""What ``SessionAuth`` lets through without a logged-in user (regular expressions)."""


@dataclass
class LoginForm:
    email: str = ""
    password: str = ""


async def retrieve_user(session: dict[str, Any], connection: ASGIConnection[Any, Any, Any, Any]) -> Any:
    """``SessionAuth``'s user: the email the session was logged in with, else nobody."""
    return {"email": session["email"]} if "email" in session else None


@get("/")
async def index(request: Request[Any, Any, Any]) -> Template:
    return Template(template_name="auth.html", context={"email": request.session.get("email")})


@post("/login")
async def login(request: Request[Any, Any, Any], session: Session, data: URLEncodedBody[LoginForm]) -> Redirect:
    if not 0 < len(data.email) <= MAX_EMAIL_LENGTH:  # a user id is 1 to 256 characters (bind_user)
        raise ValidationException(detail=f"email must be 1 to {MAX_EMAIL_LENGTH} characters")
    if data.password == CORRECT_PASSWORD:
        session.set("email", data.email)
        session.bind_user(
            data.email
        )  # listed among the user's devices; rotates the id, so an id planted before is worthless
        flash(request, "Login successful", "success")
        flash(request, f"Welcome back, {data.email}", "info")
    else:
        flash(request, "Incorrect username or password", "error")
    return Redirect("/")


@post("/logout")
async def logout(session: Session) -> Redirect:
    # Litestar's request.clear_session() leaves no session to flash into (request.session is
    # Empty then): delete it with the plugin's API, whose later flash survives into a fresh session.
    session.delete_session()
    session.flash(MESSAGES_KEY, "Logged out", category="info")
    return Redirect("/")


@get("/admin", media_type=MediaType.TEXT)
async def admin(request: Request[dict[str, str], Any, Any]) -> str:
    return f"Admin {request.user['email']}"


@get("/sessions")
async def my_sessions(session: Session, user_sessions: UserSessions) -> list[dict[str, Any]]:
    """The logged-in user's devices (SessionAuth answers 401 to anyone else)."""
    assert session.user_id is not None
    found = await user_sessions.list_sessions(session.user_id, current=session.handle)
    return [
        {
            "handle": info.handle,
            "current": info.current,
            "created_at": info.created_at.isoformat(),
            "last_seen": info.last_seen.isoformat(),
            "user_agent": info.device.get("user_agent"),
        }
        for info in found
    ]


@post("/sessions/revoke-others", status_code=204)
async def revoke_others(session: Session, user_sessions: UserSessions) -> None:
    assert session.user_id is not None
    await user_sessions.revoke_others(session.user_id, keep=session.handle)


@post("/sessions/{handle:str}/revoke", status_code=204)
async def revoke(session: Session, user_sessions: UserSessions, handle: FromPath[str]) -> None:
    assert session.user_id is not None
    if not await user_sessions.revoke(session.user_id, handle):
        raise NotFoundException("no such session")


def keep_user_agent(connection: ASGIConnection[Any, Any, Any, Any]) -> dict[str, str]:
    """What the device list shows of a device: its user agent, nothing else."""
    return {"user_agent": connection.headers.get("user-agent", "")}


@websocket("/ws")
async def hello(socket: WebSocket[Any, Any, Any]) -> None:
    await socket.accept()
    email = socket.session.get("email")  # the plugin loads the session for WebSocket routes too
    await socket.send_text(f"hello {email if email is not None else 'anonymous'}")
    await socket.close()


def dev_secret() -> str:
    """A random secret for this process, with a warning: a secret written in the source would let
    anyone who reads it forge a session cookie (sessions end when the demo restarts)."""
    logging.getLogger("litestar_flash_sessions").warning(
        "SESSION_SECRET is not set: sealing cookies with a random secret of this process"
    )
    return secrets.token_urlsafe(32)


def make_store(name: str) -> Any:
    """Build the named store; drivers are imported only for the store chosen."""
    if name == "memory":
        from litestar_flash_sessions.stores import MemoryStore

        return MemoryStore()
    if name == "cookie":
        from litestar_flash_sessions.stores import CookieStore

        return CookieStore(os.environ.get("SESSION_SECRET") or dev_secret())
    if name == "sqlite":
        from litestar_flash_sessions.stores.sqlite import SQLiteStore

        return SQLiteStore(os.environ.get("SESSION_SQLITE_PATH", DEFAULT_SQLITE_PATH))
    if name == "postgres":
        from litestar_flash_sessions.stores.postgres import PostgresStore

        return PostgresStore(os.environ["POSTGRES_URL"])
    if name == "redis":
        from redis.asyncio import Redis

        from litestar_flash_sessions.stores.redis import RedisStore

        return RedisStore(Redis.from_url(os.environ["REDIS_URL"]))
    if name == "mongo":
        from pymongo import AsyncMongoClient

        from litestar_flash_sessions.stores.mongo import MongoStore

        return MongoStore(AsyncMongoClient(os.environ["MONGO_URL"])["sessions_demo"])
    if name == "webdis":
        from litestar_flash_sessions.stores.webdis import WebdisStore

        return WebdisStore(os.environ["WEBDIS_URL"])
    raise ValueError(f"unknown store {name!r}: choose memory, cookie, sqlite, postgres, redis, mongo or webdis")


def create_app(store: str | SessionBackend | None = None) -> Litestar:
    """Build the demo app on the named store (default: ``$SESSION_STORE``, else sqlite), or on
    the store given.
    """
    backend = (
        store if isinstance(store, SessionBackend) else make_store(store or os.environ.get("SESSION_STORE", "sqlite"))
    )
    plugin = SessionPlugin(SessionConfig(store=backend, device_info=keep_user_agent))
    auth = SessionAuth[Any, Any](
        retrieve_user_handler=retrieve_user,
        session_backend_config=plugin.session_backend_config,
        exclude=PUBLIC_PATHS,
    )
    environment = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=True)
    template_config = TemplateConfig(instance=JinjaTemplateEngine.from_environment(environment))
    return Litestar(
        [index, login, logout, admin, hello, my_sessions, revoke_others, revoke],
        plugins=[plugin, FlashPlugin(FlashConfig(template_config))],  # the SessionPlugin first
        template_config=template_config,
        on_app_init=[auth.on_app_init],
    )


app = create_app()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", default=os.environ.get("SESSION_STORE", "sqlite"))
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8003)
    args = parser.parse_args()

    import uvicorn

    uvicorn.run(create_app(args.store), host=args.host, port=args.port)


if __name__ == "__main__":
    main()
