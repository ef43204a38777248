"""What a server-side store holds under a session's key, and how it is encoded.

A key holds one of three records, encoded as a MessagePack array whose first item says which:

* :class:`Live`: the session's values and pending flashes;
* :class:`Moved`: the session was rotated to another key (a tombstone left by a login);
* :class:`Ended`: the session was deleted (a tombstone left by a logout or a revocation).

A user's sessions are listed under a key of their own, in a :class:`UserIndex` (see
:mod:`litestar_flash_sessions.users`).

The tombstones let a request that loaded the session before a rotation or a logout committed
find out what happened when its compare-and-set fails: follow the session to its new key, or
give up because the logout wins (docs/concurrency.md). A new request that presents the id of a
tombstone gets a fresh session: the old id opens nothing.
"""

from __future__ import annotations

from typing import Any, Final

import msgspec

__all__ = (
    "TOMBSTONE_SECONDS",
    "TOUCH_SECONDS",
    "UNDECODABLE",
    "Ended",
    "Flash",
    "IndexEntry",
    "Live",
    "Moved",
    "UserIndex",
    "decode",
    "decode_index",
    "encode",
    "seal",
    "unseal",
)

TOMBSTONE_SECONDS: Final = 3600
"""How long a tombstone (or an emptied session's record) is kept at most: longer than any
request stays in flight between loading its session and committing it."""
TOUCH_SECONDS: Final = 60
"""How stale :attr:`Live.seen_at` may get: a request that finds it older writes it again (and
slides a persistent cookie's ``Max-Age``); idle timeouts allow for this much lag."""


class Flash(msgspec.Struct, array_like=True):
    """One pending flash message.

    ``id`` is unique within the session (from :attr:`Live.next_flash_id`), so that consuming one
    message never removes a newer one of the same key that a concurrent request added.
    """

    id: int
    key: str
    value: Any
    category: str | None = None


class Live(msgspec.Struct, array_like=True, tag=0):
    """A session's content: its values and its pending flashes, apart so that they never mix,
    and its times.
    """

    data: dict[str, Any]
    flashes: list[Flash]
    next_flash_id: int = 0
    """The id the next flash gets; only ever grows, so an id is never reused."""
    created_at: float = 0.0
    """When the session was first stored (seconds since the epoch); rotation keeps it."""
    seen_at: float = 0.0
    """When a request last used it, refreshed at most every ``TOUCH_SECONDS`` (never an extra
    write per request)."""
    lifetime: int | None = None
    """This session's own idle timeout (``session.set_expiry``); ``None``: the config's."""
    user: str | None = None
    """The user the session is bound to (``session.bind_user``), ``None`` if none."""
    handle: str | None = None
    """The opaque handle that names the session in its user's index (random, given at binding,
    kept across rotation): never the id, never the key."""
    device: dict[str, str] | None = None
    """What ``SessionConfig.device_info`` kept of the device at binding (a user agent...)."""

    @property
    def is_empty(self) -> bool:
        """Whether the session holds no value, no pending flash and no user."""
        return not self.data and not self.flashes and self.user is None

    @property
    def owner(self) -> tuple[str, str] | None:
        """The user and handle the session is listed under, ``None`` when it is not bound."""
        return None if self.user is None or self.handle is None else (self.user, self.handle)


class Moved(msgspec.Struct, array_like=True, tag=1):
    """The session now lives under the store key ``to`` (it was rotated)."""

    to: str


class Ended(msgspec.Struct, array_like=True, tag=2):
    """The session was deleted; requests still in flight on it must not bring it back."""

    shown: list[int] = []
    """The ids of the flashes the ending request showed: a request in flight that would show one
    of them again answers with the flash retry instead."""


class IndexEntry(msgspec.Struct, array_like=True):
    """One session of a user: its handle, the store keys it may live under, and when it was bound.

    ``keys`` holds one key, or two while a rotation moves the session to a new one: a key is
    listed before a bound record is written there, and unlisted after it stops holding one.
    """

    handle: str
    keys: list[str]
    created_at: float
    """When the session was bound to the user."""
    listed_at: float
    """When a key was last listed: a listed key that holds nothing may be about to be written
    (its login is in flight) until ``TOMBSTONE_SECONDS`` later."""


class UserIndex(msgspec.Struct, array_like=True, tag=3):
    """The sessions bound to one user: a superset of the live ones (dead entries are pruned lazily)."""

    entries: list[IndexEntry]


encode = msgspec.msgpack.Encoder().encode
"""Encode a record as bytes for a store."""

decode = msgspec.msgpack.Decoder(Live | Moved | Ended).decode
"""Decode a store's bytes into a record.

Raises:
    msgspec.DecodeError: The bytes are not a record (corrupt, or another application's).
    RecursionError: A value in it is nested deeper than the stack allows here.
"""

UNDECODABLE: Final = (msgspec.DecodeError, RecursionError)
"""What decoding a record or an index raises for bytes that cannot be read: corrupt ones, and
values nested deeper than the stack allows where they are read (msgspec counts the stack, so a
record encoded in one place may not decode in a deeper one). Either counts as a corrupt record:
a fresh session, never a 500."""

decode_index = msgspec.msgpack.Decoder(UserIndex).decode
"""Decode a user's index.

Raises:
    msgspec.DecodeError: The bytes are not an index (or see :data:`UNDECODABLE`).
"""


def seal(sealer: Any, key: str, record: bytes) -> bytes:
    """Return what to store for ``record`` at ``key``: sealed to the key when records are
    encrypted (``sealer``, from ``SessionConfig.encryption_secret``), else the record itself.
    """
    return record if sealer is None else sealer.seal_bytes(record, key.encode())


def unseal(sealer: Any, key: str, stored: bytes) -> bytes | None:
    """Return the record :func:`seal` stored at ``key``, ``None`` if it does not open there."""
    return stored if sealer is None else sealer.open_bytes(stored, key.encode())
