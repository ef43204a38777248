"""ASGI apps that serve the login demo's page for the HTTP benchmark (``benchmarks/http_load.py``).

Our plugin is measured on the demo itself (``examples.login:app`` with ``SESSION_STORE=redis`` or
``postgres``); this module holds the two apps to compare it with, each rendering the same HTML:

* ``benchmarks.apps:no_sessions`` -- no session machinery at all: ``GET /`` renders the page of
  a logged-in user from constants;
* ``benchmarks.apps:builtin`` -- Litestar's own server-side sessions
  (``ServerSideSessionConfig``) on ``litestar.stores.redis.RedisStore`` at ``$REDIS_URL``, with
  a ``POST /login`` that stores the email and a ``GET /`` that makes the same four reads as the
  demo's page. Litestar's middleware has no flash messages, so the login stores no message:
  after its first page the demo's session holds the same data.

Serve one with ``granian --interface asgi benchmarks.apps:no_sessions`` (or ``:builtin``). Only
the app that is named is built, so ``no_sessions`` needs no Redis.
"""

from __future__ import annotations

import os
from typing import Any

from litestar import Litestar, MediaType, Request, get, post
from litestar.params import URLEncodedBody
from litestar.response import Redirect

from examples.login import LoginForm, render_page

BUILTIN_NAMESPACE = "lfs_bench_builtin"
"""The key namespace of the built-in sessions in Redis (``lfs_bench_builtin:<id>``)."""
EMAIL = "ann@example.com"
"""The logged-in user of every case."""


# ---------------------------------------------------------------- no sessions


@get("/", media_type=MediaType.HTML)
async def plain_index() -> str:
    return render_page("", "", None, EMAIL)


def create_no_sessions() -> Litestar:
    return Litestar([plain_index])


# ---------------------------------------------------------------- Litestar's ServerSideSessionConfig


@post("/login")
async def builtin_login(request: Request[Any, Any, Any], data: URLEncodedBody[LoginForm]) -> Redirect:
    if data.password == "correct":
        request.set_session({"email": data.email})
    return Redirect("/")


@post("/logout")
async def builtin_logout(request: Request[Any, Any, Any]) -> Redirect:
    request.clear_session()
    return Redirect("/")


@get("/", media_type=MediaType.HTML)
async def builtin_index(request: Request[Any, Any, Any]) -> str:
    session = request.session
    return render_page(
        session.get("message") or "",
        session.get("error") or "",
        session.get("failed-login-attempts"),
        session.get("email"),
    )


def create_builtin(redis_url: str | None = None) -> Litestar:
    """Litestar's server-side sessions on its RedisStore, at ``redis_url`` (default ``$REDIS_URL``)."""
    from litestar.middleware.session.server_side import ServerSideSessionConfig
    from litestar.stores.redis import RedisStore

    store = RedisStore.with_client(redis_url or os.environ["REDIS_URL"], namespace=BUILTIN_NAMESPACE)
    return Litestar(
        [builtin_index, builtin_login, builtin_logout],
        middleware=[ServerSideSessionConfig(store="sessions").middleware],
        stores={"sessions": store},
    )


_FACTORIES = {"no_sessions": create_no_sessions, "builtin": create_builtin}


def __getattr__(name: str) -> Any:
    """Build ``no_sessions`` or ``builtin`` when the server imports it (once)."""
    factory = _FACTORIES.get(name)
    if factory is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    app = factory()
    globals()[name] = app
    return app
