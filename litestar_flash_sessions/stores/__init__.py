"""Session stores. Each lives in a module of its own and imports its driver only when used.

``from litestar_flash_sessions.stores import RedisStore`` imports ``redis`` at that moment, not
before, so the core installs and imports without any database driver.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from litestar_flash_sessions.backend import SessionBackend
from litestar_flash_sessions.stores.base import SessionStore, StoreUnavailableError
from litestar_flash_sessions.stores.cookie import CookieStore
from litestar_flash_sessions.stores.memory import MemoryStore

if TYPE_CHECKING:
    from litestar_flash_sessions.stores.mongo import MongoStore
    from litestar_flash_sessions.stores.postgres import PostgresStore
    from litestar_flash_sessions.stores.redis import RedisStore
    from litestar_flash_sessions.stores.sqlite import SQLiteStore
    from litestar_flash_sessions.stores.webdis import WebdisStore

__all__ = (
    "CookieStore",
    "MemoryStore",
    "MongoStore",
    "PostgresStore",
    "RedisStore",
    "SQLiteStore",
    "SessionBackend",
    "SessionStore",
    "StoreUnavailableError",
    "WebdisStore",
)

_LAZY = {
    "MongoStore": "mongo",
    "PostgresStore": "postgres",
    "RedisStore": "redis",
    "SQLiteStore": "sqlite",
    "WebdisStore": "webdis",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"{__name__}.{module}"), name)
