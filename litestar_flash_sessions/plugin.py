"""The Litestar plugin: wires the dependency, the middleware, the store's lifespan and the docs."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from litestar.di import Provide
from litestar.enums import ParamType
from litestar.middleware import DefineMiddleware
from litestar.openapi.spec import (
    Components,
    OpenAPIHeader,
    OpenAPIResponse,
    Operation,
    Parameter,
    Schema,
    SecurityScheme,
)
from litestar.openapi.spec.enums import OpenAPIType
from litestar.plugins import InitPlugin, ReceiveRoutePlugin
from litestar.routes import HTTPRoute

from litestar_flash_sessions.backend import SessionBackend
from litestar_flash_sessions.cleanup import PeriodicCleanup
from litestar_flash_sessions.config import SessionConfig
from litestar_flash_sessions.cookies import CookieJar
from litestar_flash_sessions.middleware import OutageLog, SessionMiddleware, session_provider
from litestar_flash_sessions.session import FlashSession, Session

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from litestar import Litestar
    from litestar.config.app import AppConfig
    from litestar.handlers import HTTPRouteHandler
    from litestar.routes import BaseRoute

__all__ = ("SessionPlugin",)

DEPENDENCY_KEY = "session"
SECURITY_SCHEME = "sessionCookie"


class SessionPlugin(InitPlugin, ReceiveRoutePlugin):
    """Give handlers that declare ``session: Session`` a session kept in the configured store.

    Only handlers that take the session, directly or through another dependency, get the
    middleware that commits it; the others run exactly as without the plugin.

    Args:
        config: The store and cookie settings; ``None`` uses :class:`SessionConfig` defaults
            (a :class:`MemoryStore`).
    """

    __slots__ = ("_config", "_jar", "_middleware", "_operation_classes", "_provide")

    def __init__(self, config: SessionConfig | None = None) -> None:
        self._config = config or SessionConfig()
        self._jar = CookieJar(self._config, self._config.session_cookie_name)
        outages = OutageLog()
        self._provide = Provide(session_provider(self._config, self._jar, outages))
        self._middleware = DefineMiddleware(SessionMiddleware, config=self._config, jar=self._jar, outages=outages)
        self._operation_classes: dict[type[Operation], type[Operation]] = {}

    @property
    def config(self) -> SessionConfig:
        """The plugin's configuration."""
        return self._config

    def on_app_init(self, app_config: AppConfig) -> AppConfig:
        """Register the ``session`` dependency, its type names, the store's lifespan and the
        cookie's security scheme.
        """
        app_config.dependencies[DEPENDENCY_KEY] = self._provide
        app_config.signature_namespace.update(Session=Session, FlashSession=FlashSession)
        app_config.lifespan.append(self._lifespan)
        if app_config.openapi_config is not None:
            scheme = Components(
                security_schemes={
                    SECURITY_SCHEME: SecurityScheme(
                        type="apiKey",
                        name=self._jar.name,
                        security_scheme_in="cookie",
                        description="The session cookie set by litestar-flash-sessions.",
                    )
                }
            )
            components = app_config.openapi_config.components
            app_config.openapi_config.components = [
                *(components if isinstance(components, list) else [components]),
                scheme,
            ]
        return app_config

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
        if not isinstance(route, HTTPRoute):
            return
        for handler in route.route_handlers:
            if self._takes_session(handler) and self._middleware not in (handler.middleware or ()):
                handler.middleware = [*(handler.middleware or ()), self._middleware]
                handler.operation_class = self._documented(handler.operation_class)

    def _takes_session(self, handler: HTTPRouteHandler) -> bool:
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

    def _documented(self, base: type[Operation]) -> type[Operation]:
        """Return a subclass of ``base`` whose operations document the session cookie."""
        if base not in self._operation_classes:
            self._operation_classes[base] = _session_operation(base, self._jar.name)
        return self._operation_classes[base]


def _session_operation(base: type[Operation], cookie_name: str) -> type[Operation]:
    cookie = Parameter(
        name=cookie_name,
        param_in=ParamType.COOKIE,
        required=False,
        schema=Schema(type=OpenAPIType.STRING),
        description="The session cookie. Invalid, unknown or expired values start a fresh session.",
    )
    set_cookie = OpenAPIHeader(
        schema=Schema(type=OpenAPIType.STRING),
        description=f"Sets, refreshes or expires the {cookie_name!r} session cookie when the session changed.",
    )

    @dataclass
    class SessionOperation(base):  # type: ignore[valid-type,misc]
        def __post_init__(self) -> None:
            parent: Any = super()
            if hasattr(parent, "__post_init__"):
                parent.__post_init__()
            operation: Operation = self
            operation.parameters = [*(operation.parameters or []), cookie]
            operation.security = [*(operation.security or []), {SECURITY_SCHEME: []}]
            for status, response in (operation.responses or {}).items():
                if status[:1] in ("2", "3") and isinstance(response, OpenAPIResponse):
                    response.headers = {"Set-Cookie": set_cookie, **(response.headers or {})}

    SessionOperation.__name__ = SessionOperation.__qualname__ = f"Session{base.__name__}"
    return SessionOperation
