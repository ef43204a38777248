"""Litestar's own session tools on this plugin: ``SessionAuth``, ``FlashPlugin``, ``request.session``.

Litestar's ``SessionAuth`` takes a ``session_backend_config`` and wraps its middleware around the
authentication middleware; its ``FlashPlugin`` wants an app-wide session middleware. Both are
given :class:`SessionBackendConfig`, whose middleware loads this plugin's session before the rest
of the app runs and makes it ``request.session``; everything else (the store, the commit rule,
the cookie) is the plugin's::

    plugin = SessionPlugin(SessionConfig(store=RedisStore.from_url(url)))
    auth = SessionAuth(retrieve_user_handler=load_user, session_backend_config=plugin.session_backend_config)
    flashes = FlashPlugin(FlashConfig(template_config))
    app = Litestar(handlers, plugins=[plugin, flashes], on_app_init=[auth.on_app_init])

List the ``SessionPlugin`` before the ``FlashPlugin``: Litestar's plugin checks, when it starts,
that a session middleware is in place.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from litestar.enums import ScopeType
from litestar.middleware import DefineMiddleware
from litestar.middleware.session import SessionMiddleware as LitestarSessionMiddleware
from litestar.middleware.session.base import BaseBackendConfig

from litestar_flash_sessions.middleware import Loader, SessionMiddleware

if TYPE_CHECKING:
    from litestar.config.app import AppConfig
    from litestar.types import ASGIApp, Receive, Scope, Scopes, Send

__all__ = ("AppSessionMiddleware", "SessionBackendConfig", "check_no_other_session_cookie")


class _PluginBackend:
    """What Litestar's ``SessionAuth`` calls the session backend: here it only carries the config."""

    def __init__(self, config: SessionBackendConfig) -> None:
        self.config = config


@dataclass
class SessionBackendConfig(BaseBackendConfig):  # type: ignore[type-arg]
    """A ``session_backend_config`` for Litestar's ``SessionAuth`` (and an app-wide session
    middleware for its ``FlashPlugin``), backed by a :class:`~litestar_flash_sessions.SessionPlugin`.

    Get it from :attr:`SessionPlugin.session_backend_config`; the cookie attributes are the plugin's.
    """

    loader: Loader
    key: str = "session"
    max_age: int = 0
    scopes: Scopes = field(default_factory=lambda: {ScopeType.HTTP, ScopeType.WEBSOCKET})
    path: str = "/"
    domain: str | None = None
    secure: bool = False
    httponly: bool = True
    samesite: Literal["lax", "strict", "none"] = "lax"
    exclude: str | list[str] | None = None
    exclude_opt_key: str = "skip_session"
    _backend_class: Any = _PluginBackend

    @classmethod
    def for_loader(cls, loader: Loader) -> SessionBackendConfig:
        """Return the config of the plugin that ``loader`` loads sessions for."""
        config = loader.config
        return cls(
            loader=loader,
            key=loader.jar.name,
            max_age=config.cookie_max_age or 0,
            path=config.cookie_path,
            domain=config.cookie_domain,
            secure=config.always_secure,
            httponly=config.cookie_httponly,
            samesite=config.cookie_samesite,
        )

    @property
    def middleware(self) -> DefineMiddleware:
        """The app-wide middleware that loads the session before the rest of the app runs."""
        return DefineMiddleware(AppSessionMiddleware, backend=_PluginBackend(self))


class AppSessionMiddleware(LitestarSessionMiddleware):  # type: ignore[type-arg]
    """The plugin's session middleware for every route: what Litestar's ``SessionAuth`` and
    ``FlashPlugin`` expect to find (it is a Litestar ``SessionMiddleware``).

    Args:
        app: The next ASGI app.
        backend: Carries the :class:`SessionBackendConfig`.
    """

    def __init__(self, app: ASGIApp, backend: _PluginBackend) -> None:
        super().__init__(app, backend)  # its exclude and scopes: from our config
        self._inner = SessionMiddleware(app, backend.config.loader)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Load the session, run the app, commit the session when the response starts."""
        if scope["type"] in (ScopeType.HTTP, ScopeType.WEBSOCKET):
            await self._inner(scope, receive, send)
        else:
            await self.app(scope, receive, send)


def check_no_other_session_cookie(app_config: AppConfig, cookie_name: str) -> None:
    """Refuse to start next to Litestar's own session middleware using the same cookie name.

    Both would set the cookie: two ``Set-Cookie`` headers of one name, and one of them lost.

    Raises:
        ValueError: Litestar's session middleware (directly, or inside ``SessionAuth``) uses
            ``cookie_name``.
    """
    for middleware in app_config.middleware:
        if not isinstance(middleware, DefineMiddleware):
            continue
        backend_config = _litestar_backend_config(middleware)
        if backend_config is not None and getattr(backend_config, "key", None) == cookie_name:
            raise ValueError(
                f"Litestar's own session middleware also uses the cookie {cookie_name!r}: remove it (use "
                "SessionPlugin.session_backend_config with SessionAuth), or give one of them another cookie name"
            )


def _litestar_backend_config(middleware: DefineMiddleware) -> object | None:
    """Return the backend config of a Litestar session middleware that is not this plugin's."""
    from litestar.security.session_auth.middleware import MiddlewareWrapper

    if isinstance(middleware.middleware, type) and issubclass(middleware.middleware, AppSessionMiddleware):
        return None
    if middleware.middleware is MiddlewareWrapper:
        config = middleware.kwargs.get("config")
        backend_config = getattr(config, "session_backend_config", None)
        return None if isinstance(backend_config, SessionBackendConfig) else backend_config
    if isinstance(middleware.middleware, type) and issubclass(middleware.middleware, LitestarSessionMiddleware):
        backend = middleware.kwargs.get("backend")
        return getattr(backend, "config", None)
    return None
