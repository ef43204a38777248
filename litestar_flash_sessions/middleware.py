"""The ASGI middleware that commits a session when its response starts.

The plugin puts it only in front of handlers that take the session, so every other handler
runs exactly as without the plugin. The session itself is loaded by the ``session``
dependency (:func:`provide_session`); the middleware commits it at ``http.response.start``,
before any byte of the body leaves, so that a store failure can still become a 503.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, cast

from litestar import Request
from litestar.exceptions import ImproperlyConfiguredException, ServiceUnavailableException

from litestar_flash_sessions.cookies import CookieTooLargeError
from litestar_flash_sessions.stores.base import StoreUnavailableError

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from litestar.types import ASGIApp, HTTPResponseStartEvent, HTTPScope, Message, Receive, Scope, Send

    from litestar_flash_sessions.backends import Backend
    from litestar_flash_sessions.session import FlashSession

__all__ = ("SESSION_STATE_KEY", "SessionMiddleware", "session_provider")

logger = logging.getLogger("litestar_flash_sessions")

SESSION_STATE_KEY = "litestar_flash_sessions.session"
"""Where the request's session waits in ``scope["state"]`` between dependency and middleware."""
_VARY = (b"vary", b"Cookie")


class SessionMiddleware:
    """Commit the request's session, if the handler loaded it, when the response starts.

    Args:
        app: The next ASGI app.
        backend: Loads and commits sessions.
    """

    __slots__ = ("app", "backend")

    def __init__(self, app: ASGIApp, backend: Backend) -> None:
        self.app = app
        self.backend = backend

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run the handler and commit its session at ``http.response.start``."""
        state = scope["state"]
        state[SESSION_STATE_KEY] = None
        replaced = False

        async def send_committing(message: Message) -> None:
            nonlocal replaced
            if message["type"] == "http.response.start":
                session: FlashSession | None = state[SESSION_STATE_KEY]
                if session is not None:
                    if message["status"] < 500:
                        try:
                            headers = await self.backend.commit(session, scope)
                        except StoreUnavailableError as exc:
                            logger.error("session store unavailable, answering 503: %s", exc)
                            replaced = True
                            await _send_plain(send, 503, b"Service Unavailable: session store unreachable")
                            return
                        except CookieTooLargeError as exc:
                            logger.error("session not saved: %s", exc)
                            replaced = True
                            await _send_plain(send, 500, b"Internal Server Error: session cookie too large")
                            return
                        if session.redelivers_flash:
                            replaced = True
                            await _send_retry(send, cast("HTTPScope", scope), headers)
                            return
                        message["headers"] = [*message["headers"], *headers, _VARY]
                    else:
                        message["headers"] = [*message["headers"], _VARY]
            elif replaced:
                return
            await send(message)

        await self.app(scope, receive, send_committing)


async def _send_plain(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    start: HTTPResponseStartEvent = {
        "type": "http.response.start",
        "status": status,
        "headers": [
            (b"content-type", b"text/plain; charset=utf-8"),
            (b"content-length", b"%d" % len(body)),
            *(headers or ()),
        ],
    }
    await send(start)
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def _send_retry(send: Send, scope: HTTPScope, headers: list[tuple[bytes, bytes]]) -> None:
    """Answer instead of a response that would show a flash a concurrent request already showed.

    A GET or HEAD is sent back to the same URL (the session changes are saved; the reload shows
    the page without the flash); other methods get ``409 Conflict``.
    """
    if scope["method"] in ("GET", "HEAD"):
        location = scope["raw_path"] + (b"?" + scope["query_string"] if scope["query_string"] else b"")
        start: HTTPResponseStartEvent = {
            "type": "http.response.start",
            "status": 303,
            "headers": [(b"location", location), (b"content-length", b"0"), *headers, _VARY],
        }
        await send(start)
        await send({"type": "http.response.body", "body": b"", "more_body": False})
    else:
        await _send_plain(send, 409, b"Conflict: a concurrent request of this session consumed its flash", headers)


def session_provider(backend: Backend) -> Callable[[Request[Any, Any, Any]], Awaitable[FlashSession]]:
    """Return the ``session`` dependency: it loads the session and hands it to the middleware."""

    # It takes the request, not the scope: Litestar validates a ``Scope`` parameter field by
    # field on every call, while the request is passed as it is.
    async def provide_session(request: Request[Any, Any, Any]) -> FlashSession:
        scope = request.scope
        state = scope["state"]
        if SESSION_STATE_KEY not in state:
            raise ImproperlyConfiguredException(
                "the session dependency ran on a route the SessionPlugin did not see; "
                "sessions work on HTTP handlers of the app the plugin was given to"
            )
        try:
            session = await backend.load(scope)
        except StoreUnavailableError as exc:
            logger.error("session store unavailable, answering 503: %s", exc)
            raise ServiceUnavailableException("Session store unavailable") from exc
        state[SESSION_STATE_KEY] = session
        return session

    return provide_session
