"""Testing helpers: start a test client with a given session, and read a session back.

They work on every store (memory, cookie, SQLite, PostgreSQL, Redis, Redis Cluster, MongoDB,
Webdis, or a backend of your own) and with Litestar's ``TestClient`` and ``AsyncTestClient``. A
seeded session is a real one: its record is written through the store, exactly as a request
that set those values and flashes would have written it (sealed into the cookie, for the
cookie store), and the client gets the cookie (or the numbered cookies) the app would have set::

    from litestar.testing import TestClient
    from litestar_flash_sessions.testing import get_session, set_session

    with TestClient(app) as client:
        set_session(client, {"user": "ann"}, flashes={"notice": "Welcome back"})
        response = client.get("/dashboard")  # shows the notice, once
        assert get_session(client) == {"user": "ann"}  # the values ...
        assert get_session(client).flashes == []  # ... and the pending flashes (none left)

With ``AsyncTestClient``, await :func:`aset_session` and :func:`aget_session` instead. Pass a
response to read the session that response leaves the browser with (its request's cookies with
its ``Set-Cookie`` headers applied): ``get_session(client, response)``. Reading never consumes a
flash and never slides an expiry.

Enter the client (``with TestClient(app) as client``) before seeding: the app's lifespan starts
the store (creates its pool, its table), and the helpers run the store's calls on the app's own
event loop through the client's blocking portal. Litestar's test clients run the app in a thread
with an event loop of its own, and a store's connections (asyncpg, redis-py, pymongo) work only
on the loop that opened them: a call from the test's loop would fail or hang. (A client that is
not entered runs each request, and each helper, on a fresh loop, as Litestar does.)

Without a Litestar test client (the app driven in the test's own loop, through
``httpx.ASGITransport`` inside ``async with app.lifespan()``), give the app:
``await aset_session(client, {...}, app=app)`` and ``await aget_session(client, app=app)`` run
on the running loop. Underneath, :func:`seed_session` stores a session and returns the cookies
that lead to it, and :func:`read_session` reads cookies (or a response) back. All take the app,
its ``SessionPlugin`` or its ``SessionConfig``.

Litestar's own ``TestClient.set_session_data`` and ``get_session_data`` do not look at the app:
they drive the backend of the ``session_config`` given to the client (``TestClient(app,
session_config=...)``), and without one they raise ``ImproperlyConfiguredException``. These
helpers replace them. To keep tests written for them, give the client
:func:`client_session_config`: ``TestClient(app, session_config=client_session_config(app))``
(values only; see :class:`ClientSessionConfig` for its limits).

The package also registers a pytest plugin (``litestar_flash_sessions.pytest_plugin``) with one
fixture, ``session_seeder``, a :class:`SessionSeeder` holding these helpers.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any, TypeVar, cast

import anyio.to_thread
import httpx
from litestar import Litestar
from litestar.datastructures import MutableScopeHeaders
from litestar.exceptions import ImproperlyConfiguredException
from litestar.middleware.session.base import BaseBackendConfig, BaseSessionBackend
from litestar.testing.client.base import BaseTestClient

from litestar_flash_sessions import lifetime
from litestar_flash_sessions.backend import Loaded
from litestar_flash_sessions.commit import read_record, store_key
from litestar_flash_sessions.config import SessionConfig
from litestar_flash_sessions.cookies import MAX_COOKIES, CookieJar
from litestar_flash_sessions.plugin import SessionPlugin
from litestar_flash_sessions.record import Live
from litestar_flash_sessions.session import FlashMessage, FlashSession
from litestar_flash_sessions.stores.base import SessionStore

if TYPE_CHECKING:
    from collections.abc import Awaitable
    from typing import TypeAlias

    from litestar.connection import ASGIConnection
    from litestar.middleware import DefineMiddleware
    from litestar.testing import AsyncTestClient, TestClient
    from litestar.types import Message, Scope, ScopeSession

    AnyTestClient: TypeAlias = TestClient[Any] | AsyncTestClient[Any]

__all__ = (
    "ClientSessionConfig",
    "Flashes",
    "SessionData",
    "SessionSeeder",
    "SessionTarget",
    "aget_session",
    "aset_session",
    "client_session_config",
    "get_session",
    "read_session",
    "seed_session",
    "set_session",
)

T = TypeVar("T")

SessionTarget = SessionConfig | SessionPlugin | Litestar
"""What the helpers find the session configuration in: the app, its plugin, or the config."""

Flashes = Mapping[str, Any] | Iterable[tuple[str, Any] | tuple[str, Any, str | None]]
"""Flashes to seed: ``{key: value}``, or ``(key, value)`` and ``(key, value, category)`` tuples
(a :class:`~litestar_flash_sessions.session.FlashMessage` is one), in order, several per key
if need be."""


class SessionData(dict[str, Any]):
    """A session as the app would load it: its values (the dict itself), its pending flashes, its id
    and the user it is bound to.

    An empty ``SessionData`` (``id`` ``None``) stands for no session: no cookie, or one that
    leads to nothing (unknown, expired, tampered, logged out).

    Args:
        values: The session's values.
        flashes: Its pending flashes, in order.
        session_id: Its id (the cookie store's sealed id, for the cookie store).
        user_id: The user it is bound to (``session.bind_user``), if any.
    """

    __slots__ = ("flashes", "id", "user_id")

    def __init__(
        self,
        values: Mapping[str, Any] | None = None,
        flashes: Iterable[FlashMessage] = (),
        session_id: str | None = None,
        user_id: str | None = None,
    ) -> None:
        super().__init__(values or {})
        self.flashes: list[FlashMessage] = list(flashes)
        """The pending flash messages, in order: ``FlashMessage(key, value, category)``."""
        self.id: str | None = session_id
        """The session's id, ``None`` when there is no session."""
        self.user_id: str | None = user_id
        """The user the session is bound to, ``None`` if none."""

    def __repr__(self) -> str:
        return f"SessionData({dict(self)!r}, flashes={self.flashes!r}, id={self.id!r}, user_id={self.user_id!r})"


def _config_of(target: SessionTarget) -> SessionConfig:
    """Return the session configuration of an app, a plugin or a config.

    Raises:
        LookupError: The app has no ``SessionPlugin``, or more than one.
        TypeError: ``target`` is none of the three.
    """
    if isinstance(target, SessionConfig):
        return target
    if isinstance(target, SessionPlugin):
        return target.config
    if isinstance(target, Litestar):
        plugins = [plugin for plugin in target.plugins if isinstance(plugin, SessionPlugin)]
        if len(plugins) == 1:
            return plugins[0].config
        if not plugins:
            raise LookupError("the app has no SessionPlugin: add one, or pass the plugin or its SessionConfig")
        raise LookupError(f"the app has {len(plugins)} SessionPlugins: pass the one you mean, or its SessionConfig")
    raise TypeError(f"expected a Litestar app, a SessionPlugin or a SessionConfig, got {type(target).__name__}")


def _client_config(client: httpx.Client | httpx.AsyncClient, app: SessionTarget | None) -> SessionConfig:
    """Return the session configuration of ``app``, else of the app a Litestar test client drives.

    Raises:
        LookupError: The app has no ``SessionPlugin``, or more than one.
        TypeError: No ``app`` is given and the client is not a Litestar test client of a Litestar app.
    """
    if app is not None:
        return _config_of(app)
    tested = getattr(client, "app", None) if isinstance(client, BaseTestClient) else None
    if not isinstance(tested, Litestar):
        raise TypeError(
            f"cannot tell the app of {type(client).__name__}: pass app=... (the app, its SessionPlugin or "
            "its SessionConfig), or use a Litestar TestClient or AsyncTestClient of the app"
        )
    return _config_of(tested)


def _flash_items(flashes: Flashes | None) -> list[tuple[str, Any, str | None]]:
    if not flashes:
        return []
    if isinstance(flashes, Mapping):
        return [(key, value, None) for key, value in flashes.items()]
    items: list[tuple[str, Any, str | None]] = []
    for flash in flashes:
        if len(flash) not in (2, 3):
            raise ValueError(f"a flash is (key, value) or (key, value, category), got {flash!r}")
        items.append((flash[0], flash[1], flash[2] if len(flash) == 3 else None))
    return items


async def _seed(
    config: SessionConfig,
    values: Mapping[str, Any] | None,
    flashes: Flashes | None,
    scheme: str = "http",
    user: str | None = None,
) -> list[tuple[bytes, bytes]]:
    """Store a new session holding ``values`` and ``flashes`` (bound to ``user``, listed in its
    index as a login would); return the ``Set-Cookie`` headers that carry it (none for an empty
    session, which is never stored).
    """
    backend = config.store
    loaded = Loaded.new()
    # The limit a request's session has (the middleware's): a seed that could not be set in a handler fails.
    loaded.draft.max_size = min(config.max_size_bytes, backend.max_record_bytes or config.max_size_bytes)
    session: FlashSession = loaded.session
    for key, value in (values or {}).items():
        session.set(key, value)
    for key, value, category in _flash_items(flashes):
        if category is None:
            session.flash(key, value)
        else:
            session.flash(key, value, category=category)
    if user is not None:
        session.bind_user(user)
    outcome = await backend.commit(loaded, config)
    if outcome.cookie is None:
        return []
    jar = CookieJar(config, config.session_cookie_name)
    scope = cast("Scope", {"type": "http", "scheme": scheme, "headers": []})
    if outcome.max_age is None:
        return jar.render(outcome.cookie, scope)
    return jar.render(outcome.cookie, scope, max_age=outcome.max_age)


def _name_and_value(header: bytes) -> tuple[str, str]:
    name, _, value = header.decode("latin-1").split(";", 1)[0].partition("=")
    return name.strip(), value.strip()


async def seed_session(
    target: SessionTarget,
    values: Mapping[str, Any] | None = None,
    flashes: Flashes | None = None,
    *,
    user: str | None = None,
) -> dict[str, str]:
    """Store a new session and return the cookies that lead to it, on the running event loop.

    For tests that drive the app in their own loop (with the app's lifespan running); with a
    Litestar test client, use :func:`set_session` or :func:`aset_session`, which run this on the
    app's loop and give the client the cookies.

    Args:
        target: The app, its ``SessionPlugin`` or its ``SessionConfig``.
        values: The session's values (``None`` values are left out, as ``session.set`` deletes).
        flashes: Its pending flashes: ``{key: value}``, or ``(key, value[, category])`` tuples.
        user: Bind the session to this user (``session.bind_user``), as a login would.

    Returns:
        The cookies to send, name to value: one, or several for a session the cookie store
        splits across numbered cookies; none for an empty session (no record, no cookie).

    Raises:
        SessionTooLargeError: The session would be larger than the app allows.
        TypeError: A key is not a string or a value cannot be encoded.
        ValueError: A flash is not a ``(key, value[, category])`` tuple.
        CookieTooLargeError: The cookie would be too large for browsers.
        StoreUnavailableError: The store could not be reached.
        LookupError: The app has no ``SessionPlugin``, or more than one.
    """
    headers = await _seed(_config_of(target), values, flashes, user=user)
    return dict(_name_and_value(value) for _, value in headers)


async def _read(config: SessionConfig, cookie_header: str | None) -> SessionData:
    """Return the session a request with this ``Cookie`` header would load, changing nothing."""
    headers = [(b"cookie", cookie_header.encode("latin-1"))] if cookie_header else []
    token = CookieJar(config, config.session_cookie_name).read(cast("Scope", {"type": "http", "headers": headers}))
    if token is None:
        return SessionData()
    backend = config.store
    if isinstance(backend, SessionStore):
        # Not ``backend.load``: that slides the record's expiry, as a request does.
        _, _, record = await read_record(backend, store_key(token), None, config.record_sealer)
        if not isinstance(record, Live) or lifetime.is_dead(record, config, backend.now()):
            return SessionData()
        session = Loaded(token, record).session
    else:
        session = (await backend.load(token, config)).session
    return SessionData(session.to_dict(), session.peek_flashes(), session.id, session.user_id)


def _expires(attributes: list[str]) -> bool:
    """Whether ``Set-Cookie`` attributes delete the cookie (``Max-Age`` 0 or less, or a past ``Expires``)."""
    expires: datetime | None = None
    for attribute in attributes:
        name, _, value = attribute.strip().partition("=")
        if name.lower() == "max-age":
            try:
                return int(value) <= 0
            except ValueError:
                return False
        if name.lower() == "expires":
            try:
                expires = parsedate_to_datetime(value)
            except (TypeError, ValueError):
                expires = None
    return expires is not None and expires.astimezone(UTC) <= datetime.now(UTC)


def _response_cookie_header(response: httpx.Response) -> str:
    """Return the cookies a browser holds after ``response``: its request's, with its ``Set-Cookie`` applied."""
    cookies: dict[str, str] = {}
    for pair in response.request.headers.get("cookie", "").split(";"):
        name, separator, value = pair.partition("=")
        if separator and name.strip() not in cookies:
            cookies[name.strip()] = value.strip()
    for header in response.headers.get_list("set-cookie"):
        pair, *attributes = header.split(";")
        name, _, value = pair.partition("=")
        if _expires(attributes):
            cookies.pop(name.strip(), None)
        else:
            cookies[name.strip()] = value.strip()
    return "; ".join(f"{name}={value}" for name, value in cookies.items())


async def read_session(
    target: SessionTarget, cookies: Mapping[str, str] | httpx.Cookies | httpx.Response
) -> SessionData:
    """Return the session some cookies lead to, on the running event loop, without changing it.

    No flash is consumed and no expiry slides. For tests that drive the app in their own loop;
    with a Litestar test client, use :func:`get_session` or :func:`aget_session`.

    Args:
        target: The app, its ``SessionPlugin`` or its ``SessionConfig``.
        cookies: The cookies (name to value, or an ``httpx.Cookies`` jar), or a response: then
            its request's cookies with its ``Set-Cookie`` headers applied.

    Returns:
        The session's values, pending flashes and id; empty when the cookies lead to none.

    Raises:
        StoreUnavailableError: The store could not be reached.
        LookupError: The app has no ``SessionPlugin``, or more than one.
    """
    config = _config_of(target)
    if isinstance(cookies, httpx.Response):
        header = _response_cookie_header(cookies)
    elif isinstance(cookies, httpx.Cookies):
        header = "; ".join(f"{cookie.name}={cookie.value}" for cookie in cookies.jar)
    else:
        header = "; ".join(f"{name}={value}" for name, value in cookies.items())
    return await _read(config, header)


def _request(client: httpx.Client | httpx.AsyncClient, config: SessionConfig) -> httpx.Request:
    """Return a request to the client's base URL within the cookie's path: where the app sets the cookie."""
    return httpx.Request("GET", client.base_url.join(config.cookie_path))


def _install(
    client: httpx.Client | httpx.AsyncClient, config: SessionConfig, headers: list[tuple[bytes, bytes]]
) -> dict[str, str]:
    """Replace the client's session cookies (every chunk of them) with those ``headers`` set."""
    jar = client.cookies
    name = config.session_cookie_name
    names = {name, *(f"{name}.{index}" for index in range(1, MAX_COOKIES))}
    for cookie in list(jar.jar):
        if cookie.name in names:
            jar.jar.clear(cookie.domain, cookie.path, cookie.name)
    if headers:
        # As the client takes the cookies of a real response: same domain, path and attributes,
        # so that the app's own Set-Cookie later replaces them rather than adding a second cookie.
        pairs = [(key.decode(), value.decode("latin-1")) for key, value in headers]
        jar.extract_cookies(httpx.Response(200, headers=pairs, request=_request(client, config)))
        if _cookie_header(client, config) is None:  # the client refused them, as a browser would
            raise ValueError(
                f"the client would not send the session cookie to its base URL {client.base_url}: give "
                f"it a base_url under cookie_domain={config.cookie_domain!r}, and https:// when the "
                "cookie is Secure"
            )
    return dict(_name_and_value(value) for _, value in headers)


def _cookie_header(client: httpx.Client | httpx.AsyncClient, config: SessionConfig) -> str | None:
    """Return the ``Cookie`` header the client sends with a request within the cookie's path."""
    request = _request(client, config)
    client.cookies.set_cookie_header(request)
    header: str | None = request.headers.get("cookie")
    return header


def _on_app_loop(client: AnyTestClient, function: Callable[[], Awaitable[T]]) -> T:
    """Run ``function`` on the app's event loop, the client's blocking portal, and wait for it.

    A client that is not entered has no portal: a fresh one runs it, as for Litestar's requests.

    Raises:
        TypeError: ``client`` is not a Litestar test client.
    """
    if not isinstance(client, BaseTestClient):
        raise TypeError(
            f"{type(client).__name__} is not a Litestar test client, which runs the app on a loop of its "
            "own: in the app's event loop, await aset_session or aget_session with app=... instead"
        )
    with client.portal() as portal:
        return portal.call(function)


async def _on_app_loop_async(client: httpx.Client | httpx.AsyncClient, function: Callable[[], Awaitable[T]]) -> T:
    """Run ``function`` on the app's event loop: a Litestar test client's portal (a worker thread
    waits for it, so the calling loop is not blocked), or, for any other client, the running loop.
    """
    if not isinstance(client, BaseTestClient):
        return await function()
    with client.portal() as portal:
        return await anyio.to_thread.run_sync(lambda: portal.call(function))


def set_session(
    client: AnyTestClient,
    values: Mapping[str, Any] | None = None,
    *,
    flashes: Flashes | None = None,
    user: str | None = None,
) -> dict[str, str]:
    """Give the client a new session holding ``values`` and ``flashes``, stored in the app's store.

    The session replaces any the client had (its session cookies, every chunk of them, are
    replaced; an empty session leaves the client without one). Enter the client first (``with
    TestClient(app) as client``): the store is then started and its calls run on the app's loop.

    Args:
        client: A Litestar ``TestClient`` (or ``AsyncTestClient``, from synchronous code) of an
            app with a ``SessionPlugin``.
        values: The session's values (``None`` values are left out).
        flashes: Its pending flashes: ``{key: value}``, or ``(key, value[, category])`` tuples.
        user: Bind the session to this user (``session.bind_user``), as a login would.

    Returns:
        The session cookies given to the client, name to value.

    Raises:
        SessionTooLargeError: The session would be larger than the app allows.
        TypeError: A key is not a string or a value cannot be encoded, or the client is not a
            Litestar test client of a Litestar app.
        ValueError: A flash is not a ``(key, value[, category])`` tuple.
        CookieTooLargeError: The cookie would be too large for browsers.
        StoreUnavailableError: The store could not be reached.
        LookupError: The app has no ``SessionPlugin``, or more than one.
    """
    config = _client_config(client, None)
    seed = functools.partial(_seed, config, values, flashes, client.base_url.scheme, user)
    return _install(client, config, _on_app_loop(client, seed))


async def aset_session(
    client: httpx.Client | httpx.AsyncClient,
    values: Mapping[str, Any] | None = None,
    *,
    flashes: Flashes | None = None,
    user: str | None = None,
    app: SessionTarget | None = None,
) -> dict[str, str]:
    """Give a client a new session: :func:`set_session`, awaited, for an ``AsyncTestClient``, or
    for an ``httpx.AsyncClient`` driving the app in the running loop (``httpx.ASGITransport``,
    inside ``async with app.lifespan()``): give ``app`` then.

    Args:
        client: A Litestar ``AsyncTestClient`` (or ``TestClient``), entered, or any httpx client
            of the app with ``app`` given.
        values: The session's values (``None`` values are left out).
        flashes: Its pending flashes: ``{key: value}``, or ``(key, value[, category])`` tuples.
        user: Bind the session to this user (``session.bind_user``), as a login would.
        app: The app, its ``SessionPlugin`` or its ``SessionConfig``; by default the app of the
            Litestar test client.

    Returns:
        The session cookies given to the client, name to value.

    Raises:
        SessionTooLargeError: The session would be larger than the app allows.
        TypeError: A key is not a string or a value cannot be encoded, or no ``app`` is given
            for a client that is not a Litestar test client.
        ValueError: A flash is not a ``(key, value[, category])`` tuple.
        CookieTooLargeError: The cookie would be too large for browsers.
        StoreUnavailableError: The store could not be reached.
        LookupError: The app has no ``SessionPlugin``, or more than one.
    """
    config = _client_config(client, app)
    seed = functools.partial(_seed, config, values, flashes, client.base_url.scheme, user)
    return _install(client, config, await _on_app_loop_async(client, seed))


def get_session(client: AnyTestClient, response: httpx.Response | None = None) -> SessionData:
    """Return the client's session (or the one ``response`` leaves it with), without changing it.

    No flash is consumed and no expiry slides: what the next request would find.

    Args:
        client: A Litestar ``TestClient`` (or ``AsyncTestClient``, from synchronous code) of an
            app with a ``SessionPlugin``.
        response: Read the session this response leaves the browser with (its request's cookies
            with its ``Set-Cookie`` headers applied) instead of the client's current cookies.

    Returns:
        The session's values (the dict), pending flashes (``.flashes``) and id (``.id``); empty
        when there is no session.

    Raises:
        StoreUnavailableError: The store could not be reached.
        TypeError: The client is not a Litestar test client of a Litestar app.
        LookupError: The app has no ``SessionPlugin``, or more than one.
    """
    config = _client_config(client, None)
    header = _cookie_header(client, config) if response is None else _response_cookie_header(response)
    return _on_app_loop(client, functools.partial(_read, config, header))


async def aget_session(
    client: httpx.Client | httpx.AsyncClient,
    response: httpx.Response | None = None,
    *,
    app: SessionTarget | None = None,
) -> SessionData:
    """Return a client's session: :func:`get_session`, awaited, for an ``AsyncTestClient``, or for
    an ``httpx.AsyncClient`` driving the app in the running loop: give ``app`` then.

    Args:
        client: A Litestar ``AsyncTestClient`` (or ``TestClient``), entered, or any httpx client
            of the app with ``app`` given.
        response: Read the session this response leaves the browser with instead.
        app: The app, its ``SessionPlugin`` or its ``SessionConfig``; by default the app of the
            Litestar test client.

    Returns:
        The session's values (the dict), pending flashes (``.flashes``) and id (``.id``); empty
        when there is no session.

    Raises:
        StoreUnavailableError: The store could not be reached.
        TypeError: No ``app`` is given for a client that is not a Litestar test client.
        LookupError: The app has no ``SessionPlugin``, or more than one.
    """
    config = _client_config(client, app)
    header = _cookie_header(client, config) if response is None else _response_cookie_header(response)
    return await _on_app_loop_async(client, functools.partial(_read, config, header))


class _ClientSessionBackend(BaseSessionBackend["ClientSessionConfig"]):
    """What Litestar's test clients call for ``set_session_data`` and ``get_session_data``."""

    def get_session_id(self, connection: ASGIConnection[Any, Any, Any, Any]) -> str | None:
        """Return ``None``: every ``set_session_data`` stores a new session."""
        return None

    async def store_in_message(
        self, scope_session: ScopeSession, message: Message, connection: ASGIConnection[Any, Any, Any, Any]
    ) -> None:
        """Store a new session holding ``scope_session`` and add its ``Set-Cookie`` headers to ``message``."""
        values = scope_session if isinstance(scope_session, dict) else {}
        headers = MutableScopeHeaders.from_message(message)
        for _, value in await _seed(self.config.session_config, values, None, connection.scope.get("scheme", "http")):
            headers.add("set-cookie", value.decode("latin-1"))

    async def load_from_connection(self, connection: ASGIConnection[Any, Any, Any, Any]) -> dict[str, Any]:
        """Return the values of the session the connection's cookies lead to (flashes left out)."""
        header = "; ".join(f"{name}={value}" for name, value in connection.cookies.items())
        return dict(await _read(self.config.session_config, header))


class ClientSessionConfig(BaseBackendConfig[_ClientSessionBackend]):
    """A ``session_config`` for Litestar's test clients that makes their ``set_session_data`` and
    ``get_session_data`` use the ``SessionPlugin``'s store.

    Make it with :func:`client_session_config`. It is only for the client: its ``middleware``
    raises (the plugin brings its own). Its limits, which :func:`set_session` does not have:

    * values only: ``set_session_data`` seeds no flash, ``get_session_data`` returns no flash;
    * Litestar merges the new cookies into the client's, so a cookie store's session split
      across more numbered cookies than the new one leaves stale chunks behind (the app then
      finds no session);
    * ``AsyncTestClient`` awaits these methods on the test's event loop, not the app's: fine for
      the memory and cookie stores, but a store whose connections are bound to the app's loop
      (PostgreSQL, Redis, MongoDB...) fails; use :func:`aset_session` and :func:`aget_session`.

    Args:
        config: The plugin's configuration.
    """

    _backend_class = _ClientSessionBackend

    def __init__(self, config: SessionConfig) -> None:
        self.session_config = config
        """The plugin's configuration."""
        self.key = config.session_cookie_name
        self.max_age = config.cookie_max_age or 0
        self.path = config.cookie_path
        self.domain = config.cookie_domain
        self.secure = config.always_secure
        self.httponly = config.cookie_httponly
        self.samesite = config.cookie_samesite
        self.exclude = None
        self.exclude_opt_key = "skip_session"

    @property
    def middleware(self) -> DefineMiddleware:
        """Refuse: this config is for ``TestClient(session_config=...)`` only.

        Raises:
            ImproperlyConfiguredException: Always.
        """
        raise ImproperlyConfiguredException(
            "ClientSessionConfig is for TestClient(session_config=...) only: the SessionPlugin adds its own middleware"
        )


def client_session_config(target: SessionTarget) -> ClientSessionConfig:
    """Return a ``session_config`` that makes Litestar's ``TestClient.set_session_data`` and
    ``get_session_data`` work on this plugin: ``TestClient(app, session_config=client_session_config(app))``.

    Args:
        target: The app, its ``SessionPlugin`` or its ``SessionConfig``.

    Returns:
        The config to give the test client.

    Raises:
        LookupError: The app has no ``SessionPlugin``, or more than one.
    """
    return ClientSessionConfig(_config_of(target))


class SessionSeeder:
    """The helpers of :mod:`litestar_flash_sessions.testing` in one object: the ``session_seeder`` fixture.

    ``session_seeder.set(client, {...})`` is :func:`set_session`, and so on.
    """

    __slots__ = ()

    set = staticmethod(set_session)
    get = staticmethod(get_session)
    aset = staticmethod(aset_session)
    aget = staticmethod(aget_session)
    seed = staticmethod(seed_session)
    read = staticmethod(read_session)
    client_config = staticmethod(client_session_config)
