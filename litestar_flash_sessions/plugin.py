"""The Litestar plugin: wires the dependency, the middleware, the store's lifespan and the docs."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

from litestar import Request, Response
from litestar.di import Provide
from litestar.middleware import DefineMiddleware
from litestar.openapi.spec import (
    Operation,
)
from litestar.plugins import CLIPlugin, InitPlugin, ReceiveRoutePlugin
from litestar.routes import HTTPRoute, WebSocketRoute

from litestar_flash_sessions.backend import SessionBackend
from litestar_flash_sessions.cleanup import PeriodicCleanup
from litestar_flash_sessions.cli import add_sessions_commands
from litestar_flash_sessions.config import SessionConfig
from litestar_flash_sessions.cookies import CookieJar
from litestar_flash_sessions.integration import SessionBackendConfig, check_no_other_session_cookie
from litestar_flash_sessions.middleware import Loader, OutageLog, SessionMiddleware, provide_session
from litestar_flash_sessions.openapi import documented_config, session_operation
from litestar_flash_sessions.session import FlashSession, Session, SessionTooLargeError, UnstorableValueError
from litestar_flash_sessions.users import UnsupportedStoreError, UserSessionManager, UserSessions

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    from click import Group
    from litestar import Litestar
    from litestar.config.app import AppConfig
    from litestar.handlers import HTTPRouteHandler, WebsocketRouteHandler
    from litestar.openapi import OpenAPIConfig
    from litestar.routes import BaseRoute
    from litestar.types import TypeEncodersMap

__all__ = ("SessionPlugin",)

DEPENDENCY_KEY = "session"
USERS_DEPENDENCY_KEY = "user_sessions"


class SessionPlugin(InitPlugin, ReceiveRoutePlugin, CLIPlugin):
    """Give handlers that declare ``session: Session`` a session kept in the configured store.

    Only handlers that take the session, directly or through another dependency, get the
    middleware that commits it; the others run exactly as without the plugin. Handlers that
    declare ``user_sessions: UserSessions`` get the manager of users' sessions
    (:class:`~litestar_flash_sessions.users.UserSessionManager`), and the Litestar CLI gets a
    ``sessions`` group (:mod:`litestar_flash_sessions.cli`).

    Args:
        config: The store and cookie settings; ``None`` uses :class:`SessionConfig` defaults
            (a :class:`MemoryStore`).
    """

    __slots__ = (
        "_app_wide",
        "_config",
        "_jar",
        "_loader",
        "_middleware",
        "_operation_classes",
        "_provide",
        "_user_sessions",
    )

    def __init__(self, config: SessionConfig | None = None) -> None:
        self._config = config or SessionConfig()
        self._jar = CookieJar(self._config, self._config.session_cookie_name)
        self._loader = Loader(self._config, self._jar, OutageLog())
        # Synchronous: the middleware loaded the session already, the dependency only hands it over.
        self._provide = Provide(provide_session, sync_to_thread=False)
        self._middleware = DefineMiddleware(SessionMiddleware, loader=self._loader)
        self._operation_classes: dict[tuple[type[Operation], int], type[Operation]] = {}
        self._user_sessions = UserSessionManager(self._config)
        self._app_wide = False  # whether every route may get request.session (SessionAuth, FlashPlugin)

    @property
    def config(self) -> SessionConfig:
        """The plugin's configuration."""
        return self._config

    @property
    def user_sessions(self) -> UserSessionManager:
        """Lists and revokes users' sessions in this plugin's store (also the ``user_sessions`` dependency)."""
        return self._user_sessions

    @property
    def session_backend_config(self) -> SessionBackendConfig:
        """A ``session_backend_config`` for Litestar's ``SessionAuth``, backed by this plugin.

        ``SessionAuth(retrieve_user_handler=..., session_backend_config=plugin.session_backend_config)``
        then loads this plugin's session before authenticating, so ``request.user``, its
        ``exclude`` and guards on the user work as Litestar documents them.
        """
        self._app_wide = True
        return SessionBackendConfig.for_loader(self._loader)

    def on_app_init(self, app_config: AppConfig) -> AppConfig:
        """Register the ``session`` dependency, its type names, the store's lifespan and the
        cookie's security scheme.

        Raises:
            ValueError: The app has another ``SessionPlugin``, or Litestar's own session
                middleware on the same cookie.
        """
        if any(isinstance(plugin, SessionPlugin) and plugin is not self for plugin in app_config.plugins):
            # One ``session`` dependency per app: the other plugin would be silently inert.
            raise ValueError(
                "an app takes one SessionPlugin: the session dependency can name one store (mount "
                "an app of its own for a second one)"
            )
        app_config.dependencies[DEPENDENCY_KEY] = self._provide
        app_config.dependencies.setdefault(USERS_DEPENDENCY_KEY, Provide(self._provide_user_sessions, use_cache=True))
        app_config.signature_namespace.update(
            Session=Session, FlashSession=FlashSession, UserSessions=UserSessions, UserSessionManager=UserSessionManager
        )
        app_config.lifespan.append(self._lifespan)
        check_no_other_session_cookie(app_config, self._jar.name)
        # Values too large or not storable mostly come from the request: a 4xx, not a 500 (the
        # app's own handlers for them, if any, win).
        app_config.exception_handlers.setdefault(SessionTooLargeError, _client_error(413, "session too large"))
        app_config.exception_handlers.setdefault(UnstorableValueError, _client_error(400, "value not storable"))
        # Listing or revoking a user's sessions on the cookie store: a feature this deployment lacks.
        app_config.exception_handlers.setdefault(
            UnsupportedStoreError, _client_error(501, "not supported by the store")
        )
        if _uses_flash_plugin(app_config):
            # Litestar's FlashPlugin looks for an app-wide session middleware when it starts.
            app_config.middleware.append(self.session_backend_config.middleware)
        if self._app_wide:
            # Every route may return request.session then (as Litestar's dict), not only those
            # that take the session: sent as its values.
            app_config.type_encoders = _encoding_sessions(app_config.type_encoders)
        if app_config.openapi_config is not None:
            app_config.openapi_config = documented_config(app_config.openapi_config, self._jar.name)
        return app_config

    def on_cli_init(self, cli: Group) -> None:
        """Add ``litestar sessions list|revoke|clear-expired`` to Litestar's CLI."""
        add_sessions_commands(cli)

    async def _provide_user_sessions(self) -> UserSessionManager:
        return self._user_sessions

    @contextlib.asynccontextmanager
    async def _lifespan(self, _: Litestar) -> AsyncIterator[None]:
        """Enter the store's lifespan, with the periodic cleanup of expired sessions running inside it."""
        store = self._config.store
        interval = self._config.cleanup_interval_seconds
        async with store.lifespan():
            if interval is None or type(store).delete_expired is SessionBackend.delete_expired:
                yield
                return
            cleanup = PeriodicCleanup(store, interval)
            await cleanup.start()
            try:
                yield
            finally:
                await cleanup.stop()

    def receive_route(self, route: BaseRoute) -> None:
        """Attach the middleware and the cookie's documentation to handlers that take the session."""
        if isinstance(route, WebSocketRoute):
            socket_handler = route.route_handler
            present_on_socket = socket_handler.middleware or ()
            if self._takes_session(socket_handler) and self._middleware not in present_on_socket:
                socket_handler.middleware = [*present_on_socket, self._middleware]  # loaded at connect
            return
        if not isinstance(route, HTTPRoute):
            return
        for handler in route.route_handlers:
            present = handler.middleware or ()
            if self._takes_session(handler) and self._middleware not in present:
                handler.middleware = [*present, self._middleware]
                # It may return request.session, as with Litestar's dict: sent as its values. Only
                # where it could: type encoders make Litestar render every response more slowly.
                if handler.parsed_fn_signature.return_type.annotation not in _CANNOT_HOLD_A_SESSION:
                    handler.type_encoders = _encoding_sessions(handler.type_encoders)
                handler.operation_class = self._documented(handler.operation_class, handler.app.openapi_config)

    def _takes_session(self, handler: HTTPRouteHandler | WebsocketRouteHandler) -> bool:
        """Whether the handler's parameters, or its dependencies' in turn, include the session."""
        dependencies = handler.resolve_dependencies()
        pending = list(handler.parsed_fn_signature.parameters)
        seen: set[str] = set()
        while pending:
            name = pending.pop()
            provide = dependencies.get(name)
            if provide is None or name in seen:
                continue
            if provide is self._provide:
                return True
            seen.add(name)
            pending.extend(provide.parsed_fn_signature.parameters)
        return False

    def _documented(self, base: type[Operation], openapi_config: OpenAPIConfig | None) -> type[Operation]:
        """Return a subclass of ``base`` whose operations document the session cookie under ``openapi_config``."""
        # Keyed by the config too: one plugin in two apps must not document one app's security in the other.
        key = (base, id(openapi_config))
        if key not in self._operation_classes:
            self._operation_classes[key] = session_operation(base, self._jar.name, openapi_config=openapi_config)
        return self._operation_classes[key]


def _encoding_sessions(encoders: TypeEncodersMap | None) -> TypeEncodersMap:
    """Return ``encoders`` with one that sends a ``FlashSession`` as its values (theirs win)."""
    return {FlashSession: FlashSession.to_dict, **(encoders or {})}


_CANNOT_HOLD_A_SESSION = (str, bytes)
"""Return annotations of handlers whose response cannot carry ``request.session`` (not ``None``:
Litestar sends what a ``-> None`` handler returns all the same)."""


def _uses_flash_plugin(app_config: AppConfig) -> bool:
    from litestar.plugins.flash import FlashPlugin

    return any(isinstance(plugin, FlashPlugin) for plugin in app_config.plugins)


def _client_error(status: int, reason: str) -> Callable[[Request[Any, Any, Any], Exception], Response[Any]]:
    def handle(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
        return Response({"status_code": status, "detail": f"{reason}: {exc}"}, status_code=status)

    return handle
