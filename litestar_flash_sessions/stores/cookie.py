"""A backend that keeps the whole session in an encrypted cookie: no server needed."""

from __future__ import annotations

import math
import struct
import time
from typing import TYPE_CHECKING

from litestar_flash_sessions import lifetime
from litestar_flash_sessions.backend import EXPIRE, NOTHING, Loaded, Outcome, SessionBackend
from litestar_flash_sessions.commit import encode_within_limit, new_session_id, short_ttl, survivors_record
from litestar_flash_sessions.cookies import COOKIE_NAME, MAX_SET_COOKIE_BYTES, check_max_cookies
from litestar_flash_sessions.crypto import _HEADER as _SEALER_HEADER
from litestar_flash_sessions.crypto import _TAG as _SEALER_TAG
from litestar_flash_sessions.crypto import Sealer
from litestar_flash_sessions.record import UNDECODABLE, Live, decode

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from litestar_flash_sessions.config import SessionConfig

__all__ = ("CookieStore",)

_MIN_TOKEN = 45
"""The length of the smallest sealed token; the longest is ``max_cookies`` times the cookie size
limit. Its characters need no check of their own: anything that is not our base64 fails to open."""


_HEADER = struct.Struct(">dB")
"""The sealed payload is: the expiry (seconds since the epoch, a big-endian double; NaN for
never), the session id's length (one byte), the id (ASCII), then the session's record. Fixed
fields rather than a nested MessagePack document: the record is stored as it is and opening a
cookie decodes it once, in the backend, like a record from any other store."""
_NEVER = math.nan
_SESSION_ID_BYTES = len(new_session_id())
"""The length of the ids the store seals (43: ``new_session_id`` gives 256 bits, base64)."""
_ATTRIBUTE_ALLOWANCE = 200
"""The bytes of attributes (``Path``, ``Domain``, ``Max-Age``, ``HttpOnly``, ``SameSite``,
``Secure``) :attr:`CookieStore.max_record_bytes` allows for in each cookie: ``Path=/``, a
ten-digit ``Max-Age``, ``HttpOnly``, ``SameSite=Strict`` and ``Secure`` take 63, which leaves
``Path`` and ``Domain`` together about 135 more. Beyond, the cookie jar's ``CookieTooLargeError``
still stops a cookie browsers would drop."""
_CHUNK_NAME_ALLOWANCE = len(".20=")
"""A chunk name's suffix (``.19``) or the first chunk's count (``20.``), and the ``=``."""


def _max_record_bytes(cookie_name: str, max_cookies: int) -> int:
    """Return the bound :attr:`CookieStore.max_record_bytes` documents."""
    per_cookie = MAX_SET_COOKIE_BYTES - len(cookie_name) - _CHUNK_NAME_ALLOWANCE - _ATTRIBUTE_ALLOWANCE
    sealed_bytes = max_cookies * per_cookie * 3 // 4  # unpadded base64: 3 bytes per 4 characters
    return sealed_bytes - _SEALER_HEADER - _SEALER_TAG - _HEADER.size - _SESSION_ID_BYTES


class CookieStore(SessionBackend):
    """Keep each session, sealed with AES-256-GCM, in the browser: in one cookie, or split
    across up to ``max_cookies`` numbered cookies (``NAME``, ``NAME.1``, ``NAME.2``, ...: see
    :mod:`litestar_flash_sessions.cookies`) when it does not fit one.

    The session's expiry is sealed with it, so a client cannot extend it. The chunks are pieces
    of one sealed token, authenticated as one: a missing, reordered or mixed set opens nothing
    and gives a fresh session. Each ``Set-Cookie`` header is at most 4096 bytes; a session that
    would need more than ``max_cookies`` of them raises an error naming the limit when the
    response starts. :attr:`max_record_bytes` says, before that, how large a session surely fits.

    This backend names the session cookie: ``SessionConfig.cookie_name``, if set to another name,
    is a ``ValueError``. Concurrent requests each send back their whole cookie and the browser
    keeps the last one: the concurrency guarantees are those of the server-side stores only.

    Because the data lives with the client, the server cannot revoke a cookie: rotating the key
    or deleting the session replaces or expires the cookie in this browser, but a copy taken
    earlier still opens until it expires. Set ``expire_after_seconds`` to bound that.

    Args:
        secret: A string of at least 32 characters, or a list of them: the first seals new
            cookies, every one opens (rotate secrets by putting the new one first).
        cookie_name: The cookie holding the sealed session (the first chunk's name).
        max_cookies: The most cookies one session may be split across, 1 to 20. Every cookie
            counts against the browser's limits (about 50 cookies and 4 KB each per domain, and
            servers' request header limits, often 8 to 16 KB): keep it small.
        clock: Seconds since the epoch; injectable so that tests can move time.

    Raises:
        ValueError: A secret is shorter than 32 characters, there is none, the cookie name is
            not a valid cookie name, or ``max_cookies`` is not a whole number from 1 to 20.
        ImportError: ``cryptography`` is not installed: install the ``[cookie]`` extra.
    """

    __slots__ = ("_clock", "_max_token", "_sealer", "cookie_name", "max_cookies", "max_record_bytes")

    def __init__(
        self,
        secret: str | Sequence[str],
        *,
        cookie_name: str = "session_data",
        max_cookies: int = 4,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not isinstance(cookie_name, str) or not COOKIE_NAME.fullmatch(cookie_name):
            raise ValueError(f"cookie_name {cookie_name!r} is not a valid cookie name (an HTTP token)")
        self.cookie_name = cookie_name
        self.max_cookies: int = check_max_cookies(max_cookies)
        """The most cookies one session may be split across; the plugin's cookie jar reads it."""
        self._sealer = Sealer(secret, context=cookie_name.encode("ascii"))
        self._clock = clock
        self._max_token = max_cookies * MAX_SET_COOKIE_BYTES
        self.max_record_bytes: int = _max_record_bytes(cookie_name, max_cookies)
        """The largest encoded session record (the ``record`` given to :meth:`seal`) that surely
        fits ``max_cookies`` cookies: the session refuses a ``set`` or ``flash`` beyond it
        (``SessionTooLargeError``) rather than fail when the response starts. It is::

            max_cookies * (4096 - len(cookie_name) - 4 - 200) * 3 // 4 - 33 - 9 - 43

        token characters per ``Set-Cookie`` header (4096 bytes, less the name, a chunk suffix
        ``.NN`` or the first chunk's count ``NN.`` with the ``=``, and an allowance of 200 bytes
        for the attributes, which depend on the config), over all the cookies; 3 bytes per 4
        characters (unpadded URL-safe base64), rounded down; less what sealing adds: 33 bytes
        of the sealer (version, key id, nonce, tag), 9 of the sealed header (expiry, id length)
        and the 43 of the session id. With the defaults (``session_data``, 4 cookies): 11,555
        bytes. Attributes over the allowance (a long ``Path`` or ``Domain``) can still make the
        cookie too large: the jar's ``CookieTooLargeError`` remains the last line of defence."""

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
        if not _MIN_TOKEN <= len(token) <= self._max_token:
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
        """Open the session cookie; anything that does not open, or has outlived a timeout of the
        current configuration, gives a fresh session.
        """
        opened = None if token is None else self.open(token)
        if opened is None:
            return Loaded.new()
        session_id, record = opened
        try:
            content = decode(record)
        except UNDECODABLE:
            content = None
        state = lifetime.on_load(content, config, self.now()) if isinstance(content, Live) else None
        if state is None:
            return Loaded.new()  # an incompatible old version, or sealed under a laxer configuration
        loaded = Loaded(session_id, content, plain=record)
        loaded.draft.stale = state[0]
        return loaded

    async def commit(self, loaded: Loaded, config: SessionConfig) -> Outcome:
        """Seal the session into a new cookie value when it changed, or to slide its expiry."""
        draft, session_id = loaded.draft, loaded.session.id
        if draft.delete:
            now = self.now()
            survivors = draft.survivors(now)
            # What the request did after delete_session() lives on in a fresh session.
            if survivors is not None and (record := survivors_record(draft, survivors)) is not None:
                token = self.seal(new_session_id(), record, lifetime.store_ttl(survivors, config, now))
                return Outcome(cookie=token, max_age=lifetime.cookie_max_age(survivors, config))
            return NOTHING if session_id is None else EXPIRE
        # The sealed expiry slides with use, but at most every TOUCH_SECONDS: not a Set-Cookie per request.
        sliding = draft.stale and session_id is not None and (config.ttl is not None or draft.lifetime is not None)
        if not (draft.changed or draft.rotate or sliding):
            return NOTHING  # a set of the value a key held seals nothing anew: no new cookie
        now = self.now()
        content = draft.content(now)
        if content.is_empty and (session_id is None or draft.rotate):
            # Nothing for a new session; a rotation of a session left empty ends it (its old id
            # must stop working, and an empty session needs no new one), as on server-side stores.
            return NOTHING if session_id is None else EXPIRE
        if session_id is None or draft.rotate:
            session_id = new_session_id()
        ttl = lifetime.store_ttl(content, config, now)
        if content.is_empty:
            ttl = short_ttl(ttl)  # emptied: the session and its id stay, as on server-side stores, an hour at most
        # Sealed to expire a little after the idle timeout: the next re-seal may lag by TOUCH_SECONDS.
        slack = lifetime.touch_interval(content, config)
        record = encode_within_limit(draft, content, loaded.plain)
        token = self.seal(session_id, record, None if ttl is None else ttl + math.ceil(slack))
        return Outcome(token, False, content.lifetime or config.cookie_max_age)  # lifetime.cookie_max_age, inline
