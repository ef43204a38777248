"""A backend that keeps the whole session in an encrypted cookie: no server needed."""

from __future__ import annotations

import math
import struct
import time
from typing import TYPE_CHECKING

import msgspec

from litestar_flash_sessions.backend import EXPIRE, NOTHING, Loaded, Outcome, SessionBackend
from litestar_flash_sessions.commit import new_session_id
from litestar_flash_sessions.cookies import COOKIE_NAME
from litestar_flash_sessions.crypto import Sealer
from litestar_flash_sessions.record import Live, decode, encode

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from litestar_flash_sessions.config import SessionConfig

__all__ = ("CookieStore",)

_MIN_TOKEN, _MAX_TOKEN = 45, 4096
"""The lengths of a sealed token, from the smallest sealed payload to the cookie size limit.
Its characters need no check of their own: anything that is not our base64 fails to open."""


_HEADER = struct.Struct(">dB")
"""The sealed payload is: the expiry (seconds since the epoch, a big-endian double; NaN for
never), the session id's length (one byte), the id (ASCII), then the session's record. Fixed
fields rather than a nested MessagePack document: the record is stored as it is and opening a
cookie decodes it once, in the backend, like a record from any other store."""
_NEVER = math.nan


class CookieStore(SessionBackend):
    """Keep each session, sealed with AES-256-GCM, in a cookie of its own.

    The session's expiry is sealed with it, so a client cannot extend it. The cookie is limited
    to 4096 bytes: a session that does not fit raises an error naming the limit.

    This backend names the session cookie: ``SessionConfig.cookie_name``, if set to another name,
    is a ``ValueError``. Concurrent requests each send back their whole cookie and the browser
    keeps the last one: the concurrency guarantees are those of the server-side stores only.

    Because the data lives with the client, the server cannot revoke a cookie: rotating the key
    or deleting the session replaces or expires the cookie in this browser, but a copy taken
    earlier still opens until it expires. Set ``expire_after_seconds`` to bound that.

    Args:
        secret: A string of at least 32 characters, or a list of them: the first seals new
            cookies, every one opens (rotate secrets by putting the new one first).
        cookie_name: The cookie holding the sealed session.
        clock: Seconds since the epoch; injectable so that tests can move time.

    Raises:
        ValueError: A secret is shorter than 32 characters, there is none, or the cookie name
            is not a valid cookie name.
        ImportError: ``cryptography`` is not installed: install the ``[cookie]`` extra.
    """

    __slots__ = ("_clock", "_sealer", "cookie_name")

    def __init__(
        self,
        secret: str | Sequence[str],
        *,
        cookie_name: str = "session_data",
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not COOKIE_NAME.fullmatch(cookie_name):
            raise ValueError(f"cookie_name {cookie_name!r} is not a valid cookie name (an HTTP token)")
        self.cookie_name = cookie_name
        self._sealer = Sealer(secret, context=cookie_name.encode("ascii"))
        self._clock = clock

    def seal(self, session_id: str, record: bytes, expires_in: int | None) -> str:
        """Return the cookie value holding ``record``, expiring ``expires_in`` seconds from now.

        Raises:
            ValueError: ``session_id`` is longer than 255 characters or not ASCII.
        """
        if len(session_id) > 255 or not session_id.isascii():
            raise ValueError(f"cannot seal session id {session_id[:20]!r}...: ids are at most 255 ASCII characters")
        expires_at = _NEVER if expires_in is None else self._clock() + expires_in
        header = _HEADER.pack(expires_at, len(session_id))
        return self._sealer.seal(header + session_id.encode("ascii") + record)

    def open(self, token: str) -> tuple[str, bytes] | None:
        """Return the session id and record sealed in ``token``.

        Returns:
            ``None`` when the token is malformed, oversized, tampered, sealed with an unknown
            secret, or expired.
        """
        if not _MIN_TOKEN <= len(token) <= _MAX_TOKEN:
            return None
        payload = self._sealer.open(token)
        if payload is None or len(payload) < _HEADER.size:
            return None
        expires_at, id_length = _HEADER.unpack_from(payload)
        if expires_at <= self._clock():  # False for NaN: never expires
            return None
        record_start = _HEADER.size + id_length
        return payload[_HEADER.size : record_start].decode("ascii", "replace"), payload[record_start:]

    async def load(self, token: str | None, config: SessionConfig) -> Loaded:
        """Open the session cookie; anything that does not open gives a fresh session."""
        opened = None if token is None else self.open(token)
        if opened is None:
            return Loaded.new()
        session_id, record = opened
        try:
            content = decode(record)
        except msgspec.DecodeError:
            content = None
        if not isinstance(content, Live):  # sealed by us, so only an incompatible old version
            return Loaded.new()
        return Loaded(session_id, content)

    async def commit(self, loaded: Loaded, config: SessionConfig) -> Outcome:
        """Seal the session into a new cookie value when it changed, or to slide its expiry."""
        draft, session_id = loaded.draft, loaded.key
        if draft.delete:
            return NOTHING if session_id is None else EXPIRE
        sliding = config.ttl is not None and session_id is not None
        if not (draft.modified or draft.rotate or sliding):
            return NOTHING
        content = draft.content()
        if content.is_empty:
            return NOTHING if session_id is None else EXPIRE
        if session_id is None or draft.rotate:
            session_id = new_session_id()
        return Outcome(cookie=self.seal(session_id, encode(content), config.ttl))
