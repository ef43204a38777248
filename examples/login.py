"""The oak_sessions login example, ported to Litestar.

Run it with ``python examples/login.py`` (http://127.0.0.1:8002). Choose the store with
``--store NAME`` or ``SESSION_STORE=NAME``: memory, cookie, sqlite (the default, in
``./sessions.db``, so sessions survive a restart), postgres, redis, mongo or webdis. The server
stores read their URL from ``POSTGRES_URL``, ``REDIS_URL``, ``MONGO_URL`` or ``WEBDIS_URL``; the
cookie store its secret from ``SESSION_SECRET`` (without it, a random one per process, with a
warning: a secret written here would let anyone forge a cookie).

A session expires after 30 minutes without a request (``SESSION_IDLE_TIMEOUT``, in seconds) and
8 hours after it began however active (``SESSION_ABSOLUTE_TIMEOUT``). ``POST /login`` refuses an
``email`` or ``password`` over 256 characters with a 400 naming the field, and leaves the session
as it was.
"""

from __future__ import annotations

import argparse
import logging
import os
import secrets
from dataclasses import dataclass
from html import escape
from typing import Any

from litestar import Litestar, MediaType, Request, get, post
from litestar.exceptions import ValidationException
from litestar.params import URLEncodedBody
from litestar.response import Redirect

from litestar_flash_sessions import Session, SessionConfig, SessionPlugin
from litestar_flash_sessions.backend import SessionBackend

IDLE_TIMEOUT_SECONDS = 30 * 60
"""A session not used for 30 minutes expires (``SESSION_IDLE_TIMEOUT`` overrides it)."""
ABSOLUTE_TIMEOUT_SECONDS = 8 * 60 * 60
"""A session 8 hours old expires however active (``SESSION_ABSOLUTE_TIMEOUT`` overrides it)."""
MAX_FIELD_LENGTH = 256
"""The longest ``email`` or ``password`` the login form accepts, in characters."""
LIMITED_FIELDS = ("email", "password")


@dataclass
class LoginForm:
    email: str = ""
    password: str = ""


async def refuse_long_fields(request: Request[Any, Any, Any]) -> None:
    """Answer 400, naming the field, when the form's ``email`` or ``password`` is too long.

    A ``before_request`` hook: it runs before the handler, so a refused request stores nothing
    (the session is loaded before the hook, which could read it, and only its expiry slides).

    Raises:
        ValidationException: A field is over :data:`MAX_FIELD_LENGTH` characters.
    """
    form = await request.form()
    too_long = [
        name
        for name in LIMITED_FIELDS
        if any(len(value) > MAX_FIELD_LENGTH for value in form.getall(name, []) if isinstance(value, str))
    ]
    if too_long:
        names = " and ".join(too_long)
        raise ValidationException(
            detail=f"{names} {'is' if len(too_long) == 1 else 'are'} too long: at most {MAX_FIELD_LENGTH} characters",
            extra=[
                {"key": name, "source": "body", "message": f"at most {MAX_FIELD_LENGTH} characters"}
                for name in too_long
            ],
        )


@post("/login", before_request=refuse_long_fields)
async def login(session: Session, data: URLEncodedBody[LoginForm]) -> Redirect:
    if data.password == "correct":
        session.set("email", data.email)
        session.set("failed-login-attempts", None)
        session.flash("message", "Login successful")
        session.rotate_key()  # a new id after login: an id planted before is worthless
    else:
        failed_login_attempts: int = session.get("failed-login-attempts") or 0
        session.set("failed-login-attempts", failed_login_attempts + 1)
        session.flash("error", "Incorrect username or password")
    return Redirect("/")


@post("/logout")
async def logout(session: Session) -> Redirect:
    session.delete_session()
    return Redirect("/")


@get("/", media_type=MediaType.HTML)
async def index(session: Session) -> str:
    return render_page(
        message=session.get("message") or "",
        error=session.get("error") or "",
        failed_login_attempts=session.get("failed-login-attempts"),
        email=session.get("email"),
    )


def render_page(message: str, error: str, failed_login_attempts: int | None, email: str | None) -> str:
    """The page of the oak_sessions example, with what users typed escaped."""
    attempts = f"Failed login attempts: {failed_login_attempts}" if failed_login_attempts else ""
    if email:
        form = f"""<form id="logout" action="/logout" method="post">
            <button id="logout-button" name="logout" type="submit">Log out {escape(email)}</button>
        </form>"""
    else:
        form = """<form id="login" action="/login" method="post">
            <p>
                <input id="email" name="email" type="text" placeholder="you@email.com">
            </p>
            <p>
                <input id="password" name="password" type="password" placeholder="password">
            </p>
            <button id="login-button" name="login" type="submit">Log in</button>
        </form>"""
    return f"""<!DOCTYPE html>
<html>
<head><meta charset="utf-8"><title>Login</title></head>
<body>
    <p id="message">{escape(message)}</p>
    <p id="error">{escape(error)}</p>
    <p id="failed-login-attempts">{attempts}</p>
    {form}
</body>
</html>"""


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

        return SQLiteStore(os.environ.get("SESSION_SQLITE_PATH", "sessions.db"))
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


def timeout_from_env(variable: str, default: int) -> int:
    """Read a timeout in seconds from the environment variable, ``default`` when it is unset.

    Raises:
        ValueError: The variable is set but not a whole number.
    """
    raw = os.environ.get(variable, "").strip()
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"{variable} must be a whole number of seconds, got {raw!r}") from None


def create_app(store: str | SessionBackend | None = None) -> Litestar:
    """Build the demo app on the named store (default: ``$SESSION_STORE``, else sqlite), or on
    the store given (tests pass one, e.g. a ``MemoryStore`` on a clock of their own).
    """
    backend = (
        store if isinstance(store, SessionBackend) else make_store(store or os.environ.get("SESSION_STORE", "sqlite"))
    )
    config = SessionConfig(
        store=backend,
        expire_after_seconds=timeout_from_env("SESSION_IDLE_TIMEOUT", IDLE_TIMEOUT_SECONDS),
        absolute_timeout_seconds=timeout_from_env("SESSION_ABSOLUTE_TIMEOUT", ABSOLUTE_TIMEOUT_SECONDS),
    )
    return Litestar([index, login, logout], plugins=[SessionPlugin(config)])


app = create_app()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", default=os.environ.get("SESSION_STORE", "sqlite"))
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8002)
    args = parser.parse_args()

    import uvicorn

    uvicorn.run(create_app(args.store), host=args.host, port=args.port)


if __name__ == "__main__":
    main()
