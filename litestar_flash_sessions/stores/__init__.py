"""Session stores. Each lives in a module of its own and imports its driver only when used."""

from litestar_flash_sessions.stores.base import SessionStore, StoreUnavailableError
from litestar_flash_sessions.stores.cookie import CookieStore
from litestar_flash_sessions.stores.memory import MemoryStore

__all__ = ("CookieStore", "MemoryStore", "SessionStore", "StoreUnavailableError")
