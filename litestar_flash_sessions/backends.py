"""Loading a request's session and committing it: one backend for server-side stores, one for
the cookie store.

Both follow the same rules (SPEC section 3): an unchanged session is not written; a new session
that stays empty stores nothing and sends no cookie; a deleted or emptied session is removed and
its cookie expired; a rotated session gets a fresh id.
"""

from __future__ import annotations

import logging
import re
import secrets
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING

import msgspec

from litestar_flash_sessions.cookies import CookieJar
from litestar_flash_sessions.session import FlashSession, decode_record
from litestar_flash_sessions.stores.base import SessionStore, StoreUnavailableError
from litestar_flash_sessions.stores.cookie import CookieStore

if TYPE_CHECKING:
    from litestar.types import Scope

    from litestar_flash_sessions.config import SessionConfig

__all__ = ("Backend", "CookieBackend", "ServerSideBackend", "create_backend", "new_session_id")

logger = logging.getLogger("litestar_flash_sessions")

ROTATE_STATE_KEY = "rotate_session_key"
"""Setting ``request.state.rotate_session_key = True`` rotates the id, as in oak_sessions."""
_SESSION_ID = re.compile(r"[A-Za-z0-9_-]{43}")
_MAX_MERGE_ATTEMPTS = 8

Header = tuple[bytes, bytes]


def new_session_id() -> str:
    """Return a fresh session id: 256 random bits from :mod:`secrets`, URL-safe base64."""
    return secrets.token_urlsafe(32)


class Backend(ABC):
    """Load the session of a request, and commit it when the response starts."""

    __slots__ = ("jar", "store_name", "ttl")

    def __init__(self, config: SessionConfig, cookie_name: str, store: object) -> None:
        self.jar = CookieJar(config, cookie_name)
        self.ttl = config.ttl
        self.store_name = type(store).__name__

    @abstractmethod
    async def load(self, scope: Scope) -> FlashSession:
        """Return the request's session, or a fresh one when its cookie does not lead to one.

        Raises:
            StoreUnavailableError: The store could not be reached.
        """

    async def commit(self, session: FlashSession, scope: Scope) -> Header | None:
        """Write what the request changed and return the ``Set-Cookie`` header to send, if any.

        Raises:
            StoreUnavailableError: The store could not be reached.
            CookieTooLargeError: The cookie would be too large for browsers.
        """
        rotate = session.rotate_requested or bool(scope["state"].get(ROTATE_STATE_KEY))
        changed = session.is_modified or rotate
        if session.is_deleted or (changed and session.is_empty):
            if session.id is None:
                return None
            await self._discard(session.id)
            return self.jar.render_expired(scope)
        if not (changed or self._refreshes(session)):
            return None
        value = await self._persist(session, rotate)
        if value is None:
            return self.jar.render_expired(scope)
        return self.jar.render(value, scope)

    def _refreshes(self, session: FlashSession) -> bool:
        """Whether an unchanged session must be written again to slide its expiry."""
        return False

    @abstractmethod
    async def _discard(self, session_id: str) -> None:
        """Forget the session ``session_id``."""

    @abstractmethod
    async def _persist(self, session: FlashSession, rotate: bool) -> str | None:
        """Write the session; return the cookie's new value, or ``None`` if it was deleted meanwhile."""

    def _decode(self, session_id: str, record: bytes, source: str) -> FlashSession:
        try:
            data, flash = decode_record(record)
        except msgspec.DecodeError:
            logger.warning("corrupt session record in %s; starting a fresh session", source)
            return FlashSession()
        return FlashSession(session_id, data, flash, record)


class ServerSideBackend(Backend):
    """Sessions in a :class:`SessionStore`, their id in a cookie."""

    __slots__ = ("store",)

    def __init__(self, config: SessionConfig, store: SessionStore) -> None:
        super().__init__(config, config.cookie_name, store)
        self.store = store

    async def load(self, scope: Scope) -> FlashSession:
        """Read the id cookie and load that session; ids that are not ours never reach the store."""
        session_id = self.jar.read(scope)
        if session_id is None or not _SESSION_ID.fullmatch(session_id):
            return FlashSession()
        record = await self.store.get(session_id, self.ttl)
        if record is None:
            return FlashSession()
        return self._decode(session_id, record, self.store_name)

    async def _discard(self, session_id: str) -> None:
        await self.store.delete(session_id)

    async def _persist(self, session: FlashSession, rotate: bool) -> str | None:
        old_id = session.id
        if old_id is None or rotate:
            new_id = new_session_id()
            await self.store.set(new_id, session.encode(), self.ttl, None)
            if old_id is not None:
                await self._discard(old_id)
            return new_id
        # Another request of this session may have written since we read: replay our
        # changes on its record instead of overwriting it (see docs: concurrency).
        for _ in range(_MAX_MERGE_ATTEMPTS):
            if await self.store.set(old_id, session.encode(), self.ttl, session.loaded_record):
                return old_id
            current = await self.store.get(old_id, None)
            if current is None:
                return None
            session.rebase(current)
        raise StoreUnavailableError(f"session kept changing under {_MAX_MERGE_ATTEMPTS} concurrent writes")


class CookieBackend(Backend):
    """Sessions sealed in a cookie by a :class:`CookieStore`."""

    __slots__ = ("store",)

    def __init__(self, config: SessionConfig, store: CookieStore) -> None:
        super().__init__(config, store.cookie_name, store)
        self.store = store

    async def load(self, scope: Scope) -> FlashSession:
        """Open the session cookie; anything that does not open gives a fresh session."""
        token = self.jar.read(scope)
        opened = None if token is None else self.store.open(token)
        if opened is None:
            return FlashSession()
        return self._decode(*opened, source="the session cookie")

    def _refreshes(self, session: FlashSession) -> bool:
        return self.ttl is not None and session.id is not None

    async def _discard(self, session_id: str) -> None:
        """Nothing to delete on the server: expiring the cookie is all."""

    async def _persist(self, session: FlashSession, rotate: bool) -> str | None:
        session_id = new_session_id() if session.id is None or rotate else session.id
        return self.store.seal(session_id, session.encode(), self.ttl)


def create_backend(config: SessionConfig) -> Backend:
    """Return the backend for the configured store."""
    if isinstance(config.store, CookieStore):
        return CookieBackend(config, config.store)
    return ServerSideBackend(config, config.store)
