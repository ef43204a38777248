"""The one extension point: something that loads a request's session and commits it.

:class:`SessionBackend` is what ``SessionConfig.store`` takes, as Flask's ``SessionInterface`` or
Django's ``SessionBase``. Two implementations ship: :class:`~litestar_flash_sessions.stores.base.SessionStore`,
records in a server-side store (memory, SQL, Redis, MongoDB, Webdis: each only implements the small
record protocol), and :class:`~litestar_flash_sessions.stores.cookie.CookieStore`, the whole
session sealed in the cookie. The middleware turns an :class:`Outcome` into headers; a backend
never sees a header.
"""

from __future__ import annotations

import contextlib
import time
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, NamedTuple

from litestar_flash_sessions.draft import Draft
from litestar_flash_sessions.record import Live
from litestar_flash_sessions.session import FlashSession

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    from litestar_flash_sessions.config import SessionConfig

__all__ = ("EXPIRE", "NOTHING", "Loaded", "Outcome", "SessionBackend")


class Outcome(NamedTuple):
    """What the response must carry after a commit."""

    cookie: str | None = None
    """A new value for the session cookie, or ``None`` to leave the browser's cookie as it is."""
    expire: bool = False
    """Expire the session cookie (the session is gone)."""
    max_age: int | None = None
    """The ``Max-Age`` to send :attr:`cookie` with (a persistent cookie), ``None`` for the config's."""
    retry_flash: bool = False
    """A flash this response would show was already shown by a concurrent request: answer with a
    retry (303 for GET and HEAD, 409 otherwise) instead of the handler's response."""


NOTHING: Outcome = Outcome()
EXPIRE: Outcome = Outcome(expire=True)


class Loaded:
    """A request's session as a backend loaded it: what the commit needs besides the changes.

    Args:
        session_id: The session's id, ``None`` for a new session.
        content: The content loaded (a fresh one for a new session).
        key: The store key of its record (server-side stores).
        base: The stored bytes the content came from: the compare-and-set base (server-side).
        plain: ``base`` unsealed (the same bytes when records are not encrypted).
        spent: Seconds the load spent in store calls, counted against the request's time-out.
    """

    __slots__ = ("base", "draft", "key", "plain", "session", "spent")

    def __init__(  # noqa: PLR0917 (positional: see below)
        self,
        session_id: str | None,
        content: Live,
        key: str | None = None,
        base: bytes | None = None,
        plain: bytes | None = None,
        spent: float = 0.0,
    ) -> None:
        # Positional parameters: a load makes one of these per request, and keywords cost more.
        self.draft = draft = Draft.of(content, 0 if plain is None else len(plain))
        self.session = FlashSession(draft, session_id)
        self.key = key
        self.base = base
        self.plain = plain
        self.spent = spent

    @classmethod
    def new(cls) -> Loaded:
        """Return a fresh, empty session that has never been stored."""
        return cls(None, Live({}, []))


class SessionBackend(ABC):
    """Loads a request's session from its cookie's value and commits it when the response starts.

    Implement this to keep sessions somewhere new that is not a record store (for records in a
    server, subclass :class:`~litestar_flash_sessions.stores.base.SessionStore` instead).
    """

    cookie_name: str | None = None
    """The cookie name this backend insists on (the cookie store's own); ``None``: the config's."""
    max_record_bytes: int | None = None
    """The largest encoded session this backend can keep (the cookie store's cookies are
    limited), or ``None``: only ``SessionConfig.max_size_bytes`` limits it."""
    _clock: Callable[[], float] = staticmethod(time.time)

    def now(self) -> float:
        """Return the time in seconds since the epoch, by the backend's clock (injectable in tests)."""
        return self._clock()

    @abstractmethod
    async def load(self, token: str | None, config: SessionConfig) -> Loaded:
        """Return the session the cookie value ``token`` leads to, or a fresh one.

        Anything that does not lead to a live session (no cookie, a malformed, unknown, expired
        or tampered value) gives a fresh session: never an error.

        Raises:
            StoreUnavailableError: The store could not be reached in time.
        """

    @abstractmethod
    async def commit(self, loaded: Loaded, config: SessionConfig) -> Outcome:
        """Store what the request changed and say what the response must carry.

        Raises:
            StoreUnavailableError: The store could not be reached, or the commit could not win
                against concurrent requests, in time. Nothing was written then.
        """

    @contextlib.asynccontextmanager
    async def lifespan(self) -> AsyncIterator[None]:
        """Open what the backend owns for as long as the app runs; the plugin enters it once."""
        yield

    async def delete_expired(self) -> int:
        """Delete expired sessions and return how many were deleted.

        Backends whose server does not expire sessions by itself (SQL) override this; the plugin
        then calls it every ``SessionConfig.cleanup_interval_seconds``.

        Raises:
            StoreUnavailableError: The store could not be reached in time.
        """
        return 0
