"""The ASGI middleware that commits a session when its response starts.

The plugin puts it only in front of handlers that take the session, so every other handler
runs exactly as without the plugin. The middleware loads the session before the route runs
(its guards and hooks see ``request.session``; the ``session`` dependency only hands it over)
and commits it at ``http.response.start``, before any byte of the body leaves, so that a store
failure can still become a 503.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Mapping
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import quote, unquote

from litestar.connection import ASGIConnection
from litestar.enums import ScopeType
from litestar.exceptions import (
    HTTPException,
    ImproperlyConfiguredException,
    InternalServerException,
    ServiceUnavailableException,
)
from litestar.exceptions.responses import create_exception_response
from litestar.serialization import decode_json, encode_json
from litestar.types import Empty
from litestar.utils.scope import get_serializer_from_scope

from litestar_flash_sessions.backend import NOTHING, Loaded
from litestar_flash_sessions.cookies import CookieJar, CookieTooLargeError
from litestar_flash_sessions.session import MESSAGES_KEY, SessionTooLargeError, UnstorableValueError
from litestar_flash_sessions.stores.base import SessionStore, StoreUnavailableError

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterable

    from litestar.types import (
        ASGIApp,
        HTTPResponseStartEvent,
        HTTPScope,
        Message,
        Receive,
        Scope,
        Send,
        WebSocketAcceptEvent,
    )

    from litestar_flash_sessions.backend import Outcome, SessionBackend
    from litestar_flash_sessions.config import SessionConfig
    from litestar_flash_sessions.draft import Draft
    from litestar_flash_sessions.session import FlashSession

__all__ = ("ROTATE_STATE_KEY", "Loader", "OutageLog", "SessionMiddleware", "provide_session", "retry_location")

logger = logging.getLogger("litestar_flash_sessions")


ROTATE_STATE_KEY = "rotate_session_key"
"""Setting ``request.state.rotate_session_key = True`` rotates the id, as in oak_sessions."""


RETRY_AFTER_SECONDS = 5
"""What a 503 of an unreachable store tells clients to wait (``Retry-After``)."""


class OutageLog:
    """Log store outages without flooding the log: a line, then a count per interval.

    Args:
        interval: Seconds after a logged line during which further failures of the same store
            are only counted; the next line says how many there were.
        clock: Monotonic seconds (injectable in tests).
    """

    __slots__ = ("_clock", "_interval", "_stores")

    def __init__(self, interval: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._interval = interval
        self._clock = clock
        self._stores: dict[str, tuple[float, int]] = {}  # store -> (when its last line was logged, failures since)

    def report(self, store: str, exc: BaseException) -> None:
        """Log that ``store`` failed with ``exc``, unless a line for it was logged less than an interval ago."""
        now = self._clock()
        logged_at, since = self._stores.get(store, (-self._interval, 0))
        if now - logged_at < self._interval:
            self._stores[store] = (logged_at, since + 1)
            return
        more = f" ({since} more failures since the last line)" if since else ""
        logger.error("session store unavailable, answering 503 (%s): %s%s", store, exc, more)
        self._stores[store] = (now, 0)


_UNAVAILABLE = {"Retry-After": str(RETRY_AFTER_SECONDS), "Vary": "Cookie"}
_CACHE_CONTROL = b"cache-control"


# The dependency finds its request's session here rather than through a ``request`` parameter:
# Litestar validates a dependency's parameters on every call, and a context variable costs
# next to nothing (dependency tasks copy the context, so they see the session too).
_CURRENT_SESSION: ContextVar[FlashSession | None] = ContextVar("litestar_flash_sessions.session", default=None)
_LOADED = "litestar_flash_sessions.loaded"
"""A scope key: the loader that loaded the request's session (an app-wide session middleware's,
first). A mounted app with a plugin of its own has another loader: its session is its own."""
_VARY = (b"vary", b"Cookie")
_VARY_ONLY = [_VARY]
"""The session headers of the usual outcome, nothing to set or expire (never changed in place)."""
_WEBSOCKET = ScopeType.WEBSOCKET.value
UNAVAILABLE = (StoreUnavailableError, OSError, TimeoutError)
"""What a store raises when its server is down or slow (the last two from stores that let a
driver's error through)."""


class Loader:
    """Loads a request's session for the middleware and makes it ``request.session``
    (``scope["session"]``) and the ``session`` dependency's value.

    Args:
        config: The plugin's configuration.
        jar: Reads the session cookie.
        outages: Where store outages are logged.
    """

    __slots__ = ("backend", "config", "cookie_path", "every_path", "jar", "max_size", "outages")

    def __init__(self, config: SessionConfig, jar: CookieJar, outages: OutageLog) -> None:
        self.config = config
        self.backend: SessionBackend = config.store
        self.jar = jar
        self.outages = outages
        self.cookie_path = config.cookie_path
        self.every_path = self.cookie_path == "/"
        self.max_size = min(config.max_size_bytes, self.backend.max_record_bytes or config.max_size_bytes)

    async def load(self, scope: Scope) -> Loaded | None:
        """Load the request's session and make it ``scope["session"]``.

        Returns:
            What to commit when the response starts; ``None`` for a request outside
            ``cookie_path``, which gets a fresh session that is never saved (the browser would not
            send the cookie back).

        Raises:
            ServiceUnavailableException: The store is unreachable (a 503 with ``Retry-After``,
                through the app's exception handlers).
        """
        scope[_LOADED] = self  # type: ignore[literal-required]
        if not self.every_path and not self._in_cookie_path(scope):
            scope["session"] = Loaded.new().session
            return None
        token = self.jar.read(scope)
        try:
            loaded = await self.backend.load(token, self.config)
            if token is not None and loaded.session.id is None:
                loaded = await self._load_another(scope, loaded)
        except UNAVAILABLE as exc:
            raise self.unavailable(exc) from exc
        loaded.draft.max_size = self.max_size
        scope["session"] = loaded.session
        return loaded

    def _in_cookie_path(self, scope: Scope) -> bool:
        """Return whether the browser sends the cookie with this request: whether the path it
        asked for, percent-encoded as browsers match it, is within ``cookie_path``. That is the
        server's ``raw_path`` (which still holds the prefix of an app mounted under one), or
        ``root_path`` and it (behind a proxy that cut the root path off); without a raw path,
        Litestar's decoded path after ``root_path``.
        """
        root, raw = scope.get("root_path", ""), scope.get("raw_path")
        if not raw:
            return in_cookie_path(root + scope["path"], unquote(self.cookie_path))
        path = raw.decode("latin-1")
        return in_cookie_path(path, self.cookie_path) or (bool(root) and in_cookie_path(root + path, self.cookie_path))

    async def _load_another(self, scope: Scope, fresh: Loaded) -> Loaded:
        """Return the session of the first further cookie of the name that opens one, else
        ``fresh``: a stale cookie of another ``Path`` or ``Domain``, which the browser sends
        first, must not hide the current one (the user could never stay logged in there).
        """
        for token in self.jar.others(scope):
            loaded = await self.backend.load(token, self.config)
            if loaded.session.id is not None:
                return loaded
        return fresh

    def unavailable(self, exc: BaseException) -> ServiceUnavailableException:
        """Log that the store was unreachable and return the 503 to raise."""
        self.outages.report(type(self.backend).__name__, exc)
        return ServiceUnavailableException("Session store unavailable", headers=_UNAVAILABLE)


class SessionMiddleware:
    """Load the route's session before the rest of the route runs (its guards, hooks and
    dependencies) and commit it when the response starts.

    Args:
        app: The next ASGI app.
        loader: Loads sessions.
    """

    __slots__ = ("app", "backend", "config", "jar", "loader", "outages")

    def __init__(self, app: ASGIApp, loader: Loader) -> None:
        self.app = app
        self.loader = loader
        self.config = loader.config
        self.backend = loader.backend
        self.jar = loader.jar
        self.outages = loader.outages

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run the route and commit its session at ``http.response.start``."""
        if scope.get(_LOADED) is self.loader:
            await self.app(scope, receive, send)  # an app-wide session middleware got here first
            return
        if scope["type"] == _WEBSOCKET:
            await self._websocket(scope, receive, send)
            return
        try:
            loaded = await self.loader.load(scope)
        except ServiceUnavailableException as exc:
            # Answered here, through ``send``: raised, the 503 would pass the app's own middleware
            # as an exception, and its response would leave without them (security headers, logs).
            # Its error page may read request.session (a base template's user, its flashes): an
            # empty one, never saved.
            scope["session"] = Loaded.new().session
            await _answer_with_app_handler(exc, scope, receive, send)
            return
        replaced = False
        backend, config = self.backend, self.config
        app = scope.get("litestar_app")

        async def send_committing(message: Message) -> None:
            # Commits at http.response.start (inline: this runs per request), so that a store
            # failure can still answer in place of the handler's response.
            nonlocal replaced
            if replaced:
                return  # the handler's body, after we answered in its place
            if loaded is not None and message["type"] == "http.response.start":
                # A copy to add the session's headers to: an inner middleware may keep the message
                # it sent (Litestar's response cache replays it to every later visitor).
                message = start = cast("HTTPResponseStartEvent", {**message})
                draft = loaded.draft
                try:
                    committing = _committing(start, loaded, scope, app)
                except Exception as exc:  # values request.set_session() gave that the session cannot keep
                    replaced = True
                    if not isinstance(exc, (SessionTooLargeError, UnstorableValueError)):  # not the client's
                        logger.exception("session not saved: request.set_session() failed: %s", exc, exc_info=exc)
                    await _read_only_after(draft, _answer_with_app_handler(exc, scope, receive, send))
                    return
                if committing:
                    try:
                        # A binding goes through _commit, which keeps what device_info says of the device.
                        outcome = await (
                            self._commit(loaded, scope) if draft.user_set else backend.commit(loaded, config)
                        )
                        headers = _VARY_ONLY if outcome is NOTHING else self._headers(outcome, scope)
                    except Exception as exc:
                        replaced = True
                        await _read_only_after(draft, self._answer_failure(exc, scope, receive, send))
                        return
                    if outcome.retry_flash:
                        replaced = True
                        await _send_retry(send, cast("HTTPScope", scope), headers)
                        return
                    if len(headers) > 1:  # the response sets or expires the session cookie
                        start["headers"] = _uncacheable(start["headers"])
                    start["headers"] = _with_session_headers(start["headers"], headers)
            await send(message)

        token = _CURRENT_SESSION.set(scope["session"])  # type: ignore[arg-type]
        try:
            await self.app(scope, receive, send_committing)
        finally:
            _CURRENT_SESSION.reset(token)

    async def _answer_failure(self, exc: Exception, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer in place of the handler's response when the commit failed: a 503 when the store
        was unreachable, a 413 when the session grew past its limit in place, a 400 when a value
        is nested too deeply to encode, a 500 when the cookie would be too large or the store
        failed otherwise.
        """
        failure: Exception
        if isinstance(exc, (SessionTooLargeError, UnstorableValueError)):
            failure = exc  # grown in place past the limit, nested too deeply: the 413 or 400 a set() gets
        elif isinstance(exc, UNAVAILABLE):
            failure = self.loader.unavailable(exc)
        elif isinstance(exc, CookieTooLargeError):
            logger.error("session not saved: %s", exc)
            failure = InternalServerException("Session cookie too large")
        else:
            logger.exception("session not saved: the store failed (%s)", type(self.backend).__name__, exc_info=exc)
            failure = InternalServerException("Session store error")
        await _answer_with_app_handler(failure, scope, receive, send, cause=None if failure is exc else exc)

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Load the session at connect; save changes at the handshake (with its cookie) and then
        whenever the handler sends, and when it returns (server-side stores only: after the
        handshake no cookie can reach the browser, so a cookie store's session is read-only then).
        """
        loaded = await self.loader.load(scope)
        token = _CURRENT_SESSION.set(scope["session"])  # type: ignore[arg-type]
        try:
            if loaded is None:  # outside the cookie path: a fresh session, never saved
                await self.app(scope, receive, send)
                return
            server_side = isinstance(self.backend, SessionStore)
            loaded.draft.can_retry = False  # a socket's messages go out whatever its commits find

            async def commit() -> Outcome:
                try:
                    return await self._commit(loaded, scope)
                except UNAVAILABLE as exc:  # logged, and the socket closes as at an outage at load
                    raise self.loader.unavailable(exc) from exc

            async def send_committing(message: Message) -> None:
                kind = message["type"]
                if kind == "websocket.accept":
                    _apply_websocket_scope_session(loaded, scope)
                    writes = loaded.draft.writes
                    outcome = await commit()
                    cookie = self._headers(outcome, scope)[:-1]
                    accept = cast("WebSocketAcceptEvent", message)
                    accept["headers"] = [*(accept.get("headers") or ()), *cookie]
                    await self._after_websocket_commit(loaded, outcome, wrote=writes)
                elif kind in ("websocket.send", "websocket.close"):
                    _apply_websocket_scope_session(loaded, scope)
                    if server_side and loaded.draft.modified:
                        await self._after_websocket_commit(loaded, await commit(), wrote=True)
                await send(message)

            await self.app(scope, receive, send_committing)
            _apply_websocket_scope_session(loaded, scope)
            if server_side and loaded.draft.modified and not loaded.draft.committed:
                await commit()
        finally:
            _CURRENT_SESSION.reset(token)

    async def _after_websocket_commit(self, loaded: Loaded, outcome: Outcome, *, wrote: bool) -> None:
        """Go on, after a WebSocket's commit (``wrote``: one that may have written), in the session
        as stored under the id its cookie names (the same, a new session's, a rotation's, what
        followed ``delete_session()``): its record, its flashes' ids, its user, so that the next
        commit compares with what is stored. Where there is none (a cookie store, a session not
        stored at the handshake, ended, or the store down), later changes raise: they would land
        where no cookie leads, or bring an ended session back.
        """
        draft = loaded.draft
        draft.id_fixed = True  # no later cookie can reach the browser: the id must stay
        session_id = None if outcome.expire else outcome.cookie or loaded.session.id
        if session_id is None or not isinstance(self.backend, SessionStore):
            draft.committed = True
            return
        if not wrote:
            return  # what was loaded is what is stored: the next compare-and-set compares with it
        try:
            fresh = await self.backend.load(session_id, self.config)
        except UNAVAILABLE as exc:
            self.outages.report(type(self.backend).__name__, exc)
            draft.committed = True
            return
        if fresh.key is None:
            draft.committed = True  # gone already (revoked, logged out in between)
            return
        fresh.draft.max_size, fresh.draft.id_fixed, fresh.draft.can_retry = draft.max_size, True, False
        fresh.draft.flashes += [flash for flash in draft.flashes if flash.id < 0]  # flash(now=True): not stored
        fresh.draft.now_next = draft.now_next
        loaded.draft, loaded.key, loaded.base, loaded.plain = fresh.draft, fresh.key, fresh.base, fresh.plain
        loaded.session._carry_on_in(fresh.session)

    async def _commit(self, loaded: Loaded, scope: Scope) -> Outcome:
        """Commit the session, keeping what ``SessionConfig.device_info`` says of a device it binds."""
        draft = loaded.draft
        device_info = self.config.device_info
        if device_info is not None and draft.user_set and draft.user is not None and draft.device is None:
            draft.device = {str(name): str(value) for name, value in device_info(ASGIConnection(scope)).items()}
        return await self.backend.commit(loaded, self.config)

    def _headers(self, outcome: Outcome, scope: Scope) -> list[tuple[bytes, bytes]]:
        """Return the response's session headers: ``Vary``, and the cookie the outcome asks for.

        Raises:
            CookieTooLargeError: The cookie would be too large for browsers.
        """
        if outcome.cookie is not None:
            if outcome.max_age is not None:
                return [*self.jar.render(outcome.cookie, scope, max_age=outcome.max_age), _VARY]
            return [*self.jar.render(outcome.cookie, scope), _VARY]
        if outcome.expire:
            return [*self.jar.render_expired(scope), _VARY]
        return [_VARY]


async def _answer_with_app_handler(
    exc: Exception, scope: Scope, receive: Receive, send: Send, cause: BaseException | None = None
) -> None:
    """Answer with the exception handler the app (or the route) has for ``exc``, as if the handler
    had raised it, so that HTML error pages and Problem Details apply (and the plugin's 413 and
    400 for a session too large or a value not storable); without one, answer as Litestar does
    then, with its JSON error body (a 500 for an exception that is not an ``HTTPException``).

    The session is committed when the handler's response starts, past the point where Litestar's
    own exception middleware can still answer, and loaded before the route's own exception
    middleware runs: this does its job for the errors that happen there.
    """
    route_handler = scope.get("route_handler")
    handlers = route_handler.resolve_exception_handlers() if route_handler is not None else {}
    handler = (handlers.get(exc.status_code) if isinstance(exc, HTTPException) else None) or next(
        (handlers[kind] for kind in type(exc).__mro__ if kind in handlers), create_exception_response
    )
    if cause is not None:
        exc.__cause__ = cause
    app = scope["litestar_app"]
    request = app.request_class(scope=scope, receive=receive, send=send)
    response = handler(request, exc)
    await response.to_asgi_response(app=None, request=request)(scope, receive, send)


async def _read_only_after(draft: Draft, answer: Awaitable[None]) -> None:
    """Send ``answer``, an error page in place of the handler's response, which may read the
    session (its flashes included: nothing is saved); then make the session read-only, so that a
    later change (a background task's) raises instead of being lost.
    """
    draft.committed = False
    try:
        await answer
    finally:
        draft.committed = True


def _with_session_headers(
    existing: Iterable[tuple[bytes, bytes]], session: list[tuple[bytes, bytes]]
) -> list[tuple[bytes, bytes]]:
    """Return the response's headers followed by the session's (which end with ``Vary: Cookie``);
    ``Cookie`` joins a ``Vary`` the response already has instead, so that it says it once.
    """
    existing = existing if isinstance(existing, list) else list(existing)  # read twice below
    for name, _ in existing:
        if name == b"vary":
            break
    else:
        return [*existing, *session]  # the usual response: no Vary of its own
    merged = [*existing, *session[:-1]]
    if not any(name == b"vary" and _TOKEN_COOKIE_OR_ANY.search(value) for name, value in merged):
        first = next(index for index, (name, _) in enumerate(merged) if name == b"vary")
        merged[first] = (b"vary", merged[first][1] + b", Cookie")
    return merged


_TOKEN_COOKIE_OR_ANY = re.compile(rb"(?:^|,)\s*(?:cookie|\*)\s*(?:,|$)", re.IGNORECASE)
"""A ``Vary`` value that already names ``Cookie``, or ``*`` (which varies on everything)."""


def _uncacheable(headers: Iterable[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """Return ``headers`` with a ``Cache-Control`` no shared cache may store a response by:
    ``no-store`` where the handler set none, ``private`` (instead of ``public``) added to its own.
    """
    result, found = [], False
    for name, value in headers:
        if name.lower() == _CACHE_CONTROL:
            found = True
            directives = [d.strip() for d in value.split(b",") if d.strip() and d.strip().lower() != b"public"]
            if not any(d.lower() in (b"private", b"no-store") for d in directives):
                directives.insert(0, b"private")
            value = b", ".join(directives)  # noqa: PLW2901 (the header, rewritten)
        result.append((name, value))
    if not found:
        result.append((_CACHE_CONTROL, b"no-store"))
    return result


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
    the page without the flash); other methods get ``409 Conflict``. Either carries the session
    headers, and ``Cache-Control: no-store`` when they set or expire the cookie.
    """
    if len(headers) > 1:
        headers = _uncacheable(headers)
    if scope["method"] in ("GET", "HEAD"):
        await _send_plain(send, 303, b"", [(b"location", retry_location(scope)), *headers])
    else:
        await _send_plain(send, 409, b"Conflict: a concurrent request of this session consumed its flash", headers)


_UNSAFE_BYTE = re.compile(rb"[^\x21-\x7e]")
"""Bytes a ``Location`` must not carry raw: controls (CR and LF above all), space and non-ASCII."""
_LEADING_SLASHES = re.compile(rb"^[/\\]+")


def retry_location(scope: HTTPScope) -> bytes:
    r"""Return the ``Location`` that sends a request back to its own URL, as a same-origin path.

    The path is the raw one when the server gives it (after ``root_path`` when a proxy cut that
    off), else ``root_path`` + ``path``; any run of slashes and backslashes it starts with
    becomes one ``/`` (``//evil.example`` and ``/\evil.example`` would name another host), and
    unsafe bytes are percent-encoded in the path and the query string, which is kept.
    """
    raw, root = scope.get("raw_path"), scope.get("root_path", "")
    if raw:
        encoded_root = _quoted(root)
        # Behind a proxy that cut the root path off, the raw path lacks it (the cookie path too).
        under_root = not root or raw == encoded_root or raw.startswith(encoded_root.rstrip(b"/") + b"/")
        path = raw if under_root else encoded_root.rstrip(b"/") + raw
    else:
        path = _quoted(root + scope["path"])
    path = _LEADING_SLASHES.sub(b"/", path)
    if not path.startswith(b"/"):
        path = b"/" + path
    location = _percent_encode(path)
    if scope["query_string"]:
        location += b"?" + _percent_encode(scope["query_string"])
    return location


def _quoted(path: str) -> bytes:
    # surrogateescape: a path decoded from bytes that are not UTF-8 holds lone surrogates.
    return quote(path, safe="/%!$&'()*+,;=:@~-._", errors="surrogateescape").encode()


def _percent_encode(value: bytes) -> bytes:
    return _UNSAFE_BYTE.sub(lambda match: b"%%%02X" % match.group()[0], value)


def in_cookie_path(path: str, cookie_path: str) -> bool:
    """Return whether a browser sends a cookie of ``cookie_path`` with a request for ``path`` (RFC 6265 5.1.4)."""
    if cookie_path in ("/", path):
        return True
    return path.startswith(cookie_path) and (cookie_path.endswith("/") or path[len(cookie_path)] == "/")


def _apply_websocket_scope_session(loaded: Loaded, scope: Scope) -> None:
    """Apply what Litestar's API did to a WebSocket's ``scope["session"]`` (``set_session()``,
    ``clear_session()``) once, when the socket next sends; after the handshake the id is fixed,
    so that raises there as ``rotate_key()`` does.
    """
    current = scope.get("session")
    if current is not loaded.session:
        scope["session"] = loaded.session  # applied once, even if it raises
        _apply_scope_session(loaded, current, scope)


def _committing(message: HTTPResponseStartEvent, loaded: Loaded, scope: Scope, app: object) -> bool:
    """Close the draft as the response starts, and return whether to commit it.

    A 5xx saves nothing, like a rolled-back transaction (its response gets ``Vary: Cookie``
    here). Otherwise ``request.state.rotate_session_key`` and what Litestar's own API did to
    ``scope["session"]`` are applied first, unless the response is a mounted app's (``app``
    is the Litestar app the session was loaded in: a mounted one on the same scope sets its
    own). A HEAD request's flashes are kept.
    """
    draft = loaded.draft
    if message["status"] >= 500:
        draft.committed = True
        message["headers"] = _with_session_headers(message["headers"], _VARY_ONLY)
        return False
    if scope.get("litestar_app") is app:  # else a mounted app answered: the scope's session and state are its own
        if scope["state"].get(ROTATE_STATE_KEY):
            loaded.session.rotate_key()
        current = scope.get("session")
        if current is not loaded.session:
            _apply_scope_session(loaded, current, scope)
    if draft.shown and scope.get("method") == "HEAD":
        loaded.session.keep()  # a HEAD response's body reaches no screen: what it showed stays pending
    draft.committed = True  # from here on a change could not be saved: it raises
    return True


def _apply_scope_session(loaded: Loaded, current: object, scope: Scope) -> None:
    """Apply what Litestar's own API did to ``scope["session"]``.

    ``request.clear_session()`` (``Empty``) deletes the session; ``request.set_session(data)``
    replaces its values and, since replacing the whole session is what a login does, rotates its id.
    """
    session = loaded.session
    if current is session:
        return
    if current is Empty or current is None:
        session.delete_session()
    else:
        # A mapping of string keys as it is; any other (a data model, {1: "a"}) in its JSON form, as Litestar stores it.
        plain = isinstance(current, Mapping) and all(isinstance(key, str) for key in current)
        values = cast("Mapping[str, Any]", current) if plain else _as_dict(current, scope)
        session.rotate_key()  # first: where the id cannot change (a WebSocket's, later), nothing does
        session.clear()
        for key, value in values.items():
            if key == MESSAGES_KEY and isinstance(value, list):
                session.setdefault(MESSAGES_KEY, []).extend(value)  # Litestar's flash() after set_session()
            else:
                session[key] = value


def _as_dict(data: object, scope: Scope) -> Mapping[str, Any]:
    """Return the values of what ``request.set_session()`` was given that is not a mapping: a
    dataclass, a ``msgspec.Struct``, a Pydantic or attrs model, as Litestar's own session
    middleware stores them (its JSON form, with the route's type encoders, read back).

    Raises:
        TypeError: ``data`` is not a mapping once encoded (``set_session(42)``).
        UnstorableValueError: ``data`` is nested too deeply to encode.
    """
    try:
        values = decode_json(encode_json(data, get_serializer_from_scope(scope)))
    except RecursionError as exc:
        raise UnstorableValueError("request.set_session() was given a value nested too deeply to store") from exc
    if not isinstance(values, dict):
        raise TypeError(f"request.set_session() takes a mapping or a data model, got {type(data).__name__}")
    return values


def provide_session() -> FlashSession:
    """Return the request's session, which the middleware loaded (the ``session`` dependency).

    Raises:
        ImproperlyConfiguredException: The route is not one the plugin put its middleware on.
    """
    session = _CURRENT_SESSION.get()
    if session is None:
        raise ImproperlyConfiguredException(
            "the session dependency ran on a route the SessionPlugin did not see; "
            "sessions work on HTTP handlers of the app the plugin was given to"
        )
    return session
