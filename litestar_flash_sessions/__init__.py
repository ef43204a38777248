"""Sessions with flash messages for Litestar, after the Deno library oak_sessions.

>>> from litestar import Litestar
>>> from litestar_flash_sessions import SessionConfig, SessionPlugin
>>> app = Litestar([], plugins=[SessionPlugin(SessionConfig())])
"""

from litestar_flash_sessions.backend import SessionBackend
from litestar_flash_sessions.config import SessionConfig
from litestar_flash_sessions.cookies import CookieTooLargeError
from litestar_flash_sessions.plugin import SessionPlugin
from litestar_flash_sessions.session import (
    FlashMessage,
    FlashSession,
    Session,
    SessionTooLargeError,
    UnstorableValueError,
)
from litestar_flash_sessions.stores.base import StoreUnavailableError
from litestar_flash_sessions.users import SessionInfo, UnsupportedStoreError, UserSessionManager, UserSessions

__all__ = (
    "CookieTooLargeError",
    "FlashMessage",
    "FlashSession",
    "Session",
    "SessionBackend",
    "SessionConfig",
    "SessionInfo",
    "SessionPlugin",
    "SessionTooLargeError",
    "StoreUnavailableError",
    "UnstorableValueError",
    "UnsupportedStoreError",
    "UserSessionManager",
    "UserSessions",
)
