"""Per-user sessions: list a user's sessions, revoke one, all others, or all.

A session bound to a user (``session.bind_user``) is listed in its user's index, a
:class:`~litestar_flash_sessions.record.UserIndex` stored in the same store as the sessions,
under a key of its own (a hash of the user id: one key, so one hash slot on Redis Cluster).
The index changes only by compare-and-set, like a session, and only when a session is bound,
unbound, rotated, revoked or found expired: ordinary requests never touch it.

The guarantees rest on one order (docs/users.md):

* a key is **listed before** a bound record is written there, and **unlisted after** it stops
  holding one, so the index is always a superset of the user's live sessions: a revocation
  that reads it finds every session it must kill;
* revoking writes an :class:`~litestar_flash_sessions.record.Ended` tombstone at each listed key
  (also at a listed key that holds nothing yet: a login in flight then loses its write), so a
  request in flight on a revoked session can neither bring it back nor list it again, because
  every commit is a compare-and-set against the record it read.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Final, TypeAlias

import msgspec
from litestar.di import NamedDependency
from litestar.params import SkipValidation

from litestar_flash_sessions import lifetime
from litestar_flash_sessions.conflicts import MAX_ATTEMPTS, back_off
from litestar_flash_sessions.record import (
    TOMBSTONE_SECONDS,
    UNDECODABLE,
    Ended,
    IndexEntry,
    Live,
    Moved,
    UserIndex,
    decode,
    decode_index,
    encode,
    seal,
    unseal,
)
from litestar_flash_sessions.session import check_user_id

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from litestar_flash_sessions.config import SessionConfig
    from litestar_flash_sessions.stores.base import SessionStore

__all__ = ("SessionInfo", "UnsupportedStoreError", "UserSessionManager", "UserSessions", "index_key")

logger = logging.getLogger("litestar_flash_sessions")

Owner = tuple[str, str]
"""A bound session's user and handle."""

_FOLLOW_LIMIT: Final = 8
"""Rotations a revocation follows from one listed key at most (each leaves a ``Moved``)."""


class UnsupportedStoreError(TypeError):
    """The store cannot list or revoke a user's sessions: the cookie store keeps each session in
    its browser, out of the server's reach.
    """


class SessionInfo(msgspec.Struct, frozen=True, kw_only=True):
    """One live session of a user, as :meth:`UserSessionManager.list_sessions` describes it."""

    handle: str
    """Names the session for :meth:`UserSessionManager.revoke` (never its id)."""
    current: bool
    """Whether it is the session of the request that asked (its handle was passed as ``current``)."""
    created_at: datetime
    """When the session was first stored (UTC); rotation and binding keep it."""
    last_seen: datetime
    """When a request last used it (UTC), to the minute (it is refreshed at most once a minute)."""
    device: dict[str, str]
    """What ``SessionConfig.device_info`` kept at binding; empty by default."""


def index_key(user_id: str) -> str:
    """Return the store key of ``user_id``'s index: a hash, so that a dump of the store names no user."""
    digest = hashlib.sha256(b"litestar-flash-sessions user\x00" + user_id.encode()).digest()
    return "user-" + base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def _index_ttl(config: SessionConfig) -> int | None:
    """Return how long an index may outlive its last write: past the absolute timeout every session
    it lists is dead; without one, sessions can slide forever, so the index is kept until pruned.
    """
    absolute = config.absolute_timeout_seconds
    return None if absolute is None else absolute + TOMBSTONE_SECONDS


async def _read_index(
    store: SessionStore, config: SessionConfig, key: str, *, repair: bool = False
) -> tuple[bytes | None, UserIndex]:
    """Return the index's stored bytes (the compare-and-set base) and the index (empty if none).

    With ``repair``, an index the database holds as something other than bytes (a row edited
    by hand: ``stores.base.stored_bytes`` reads it as ``b""``) is deleted and its base is
    ``None``: it can never be the base of a compare-and-set. (Corrupt bytes stay the base: the
    compare-and-set on them lets concurrent repairs take turns, which a delete would not.)
    """
    raw = await store.get(key, None)
    if raw is None:
        return None, UserIndex([])
    plain = unseal(config.record_sealer, key, raw)
    try:
        if plain is None:
            raise msgspec.DecodeError("the index does not open with the encryption secret")
        return raw, decode_index(plain)
    except UNDECODABLE:
        logger.warning("corrupt user index in %s; starting it anew", type(store).__name__)
        if repair and raw == b"":
            await store.delete(key)
            return None, UserIndex([])
        return raw, UserIndex([])


async def update_index(
    store: SessionStore, config: SessionConfig, user: str, change: Callable[[UserIndex], UserIndex]
) -> UserIndex:
    """Apply ``change`` to ``user``'s index with a compare-and-set, replaying it after a conflict.

    Raises:
        StoreUnavailableError: The store could not be reached, or the index kept changing.
    """
    key = index_key(user)
    locks = store.locks  # this process's changes of one index take turns
    lock = await locks.acquire(key)
    try:
        for attempt in range(MAX_ATTEMPTS):
            raw, index = await _read_index(store, config, key, repair=True)
            changed = change(index)
            if changed == index and raw is not None:
                return index
            ttl = _index_ttl(config) if changed.entries else TOMBSTONE_SECONDS
            if await store.set(key, seal(config.record_sealer, key, encode(changed)), ttl, raw):
                return changed
            await back_off(attempt)
    finally:
        locks.release(key, lock)
    raise store.unavailable(f"a user's index kept changing under {MAX_ATTEMPTS} concurrent updates")


def _listing(handle: str, key: str, now: float) -> Callable[[UserIndex], UserIndex]:
    def change(index: UserIndex) -> UserIndex:
        entries = list(index.entries)
        for position, entry in enumerate(entries):
            if entry.handle == handle:
                if key in entry.keys:
                    return index
                entries[position] = IndexEntry(handle, [*entry.keys, key], entry.created_at, now)
                return UserIndex(entries)
        return UserIndex([*entries, IndexEntry(handle, [key], now, now)])

    return change


def _unlisting(pairs: Iterable[tuple[str, str]]) -> Callable[[UserIndex], UserIndex]:
    gone = set(pairs)

    def change(index: UserIndex) -> UserIndex:
        entries = []
        for entry in index.entries:
            keys = [key for key in entry.keys if (entry.handle, key) not in gone]
            if keys:
                entries.append(IndexEntry(entry.handle, keys, entry.created_at, entry.listed_at))
        return UserIndex(entries)

    return change


async def list_key(store: SessionStore, config: SessionConfig, owner: Owner, key: str) -> None:
    """List ``key`` under the owner's handle, before a record bound to the owner is written there."""
    await update_index(store, config, owner[0], _listing(owner[1], key, store.now()))


async def unlist_key(store: SessionStore, config: SessionConfig, owner: Owner, key: str) -> None:
    """Unlist ``key`` from the owner's handle, after it stopped holding the owner's live session."""
    await update_index(store, config, owner[0], _unlisting([(owner[1], key)]))


async def revoke_key(store: SessionStore, config: SessionConfig, owner: Owner, key: str) -> list[str]:
    """End the owner's session at ``key``: a tombstone there (and wherever it was rotated to).

    A key holding nothing gets the tombstone too, so that a login in flight that listed it cannot
    write there any more. A key holding another owner's session (it was bound anew, or a login in
    flight is about to bind it in place) is left alone, and stays listed: only the commit that
    listed it may unlist it.

    Returns:
        The keys that now hold a tombstone (safe to unlist): nothing can make them live again.

    Raises:
        StoreUnavailableError: The store could not be reached, or the key kept changing.
    """
    ended = encode(Ended())
    done: list[str] = []
    for _ in range(_FOLLOW_LIMIT):
        for attempt in range(MAX_ATTEMPTS):
            raw = await store.get(key, None)
            record = _decoded(config, key, raw)
            if isinstance(record, Ended):
                return [*done, key]
            if isinstance(record, Live) and record.owner != owner:
                return done
            if await store.set(key, seal(config.record_sealer, key, ended), TOMBSTONE_SECONDS, raw):
                break
            await back_off(attempt)
        else:
            raise store.unavailable(f"a revoked session kept changing under {MAX_ATTEMPTS} concurrent commits")
        done.append(key)
        if not isinstance(record, Moved):
            return done
        key = record.to  # rotated: the session lives on at the new key
    return done


def _decoded(config: SessionConfig, key: str, raw: bytes | None) -> Live | Moved | Ended | None:
    """Decode a session record; a corrupt one counts as none (it is overwritten)."""
    if raw is None:
        return None
    plain = unseal(config.record_sealer, key, raw)
    try:
        return None if plain is None else decode(plain)
    except UNDECODABLE:
        return None


class UserSessionManager:
    """List and revoke the sessions of a user, from a handler, a dependency or plain async code.

    In a handler, take the ``user_sessions`` dependency the plugin provides; elsewhere (a script,
    an admin task) make one from the app's config and run it inside the store's lifespan::

        async with config.store.lifespan():
            await UserSessionManager(config).revoke_all("ann@example.com")

    Handles are opaque: a handle names a session without revealing its id. Every method is
    race-proof against the user's requests in flight (docs/users.md).

    Args:
        config: The plugin's configuration (its store, lifetimes and encryption secret).
    """

    __slots__ = ("_config",)

    def __init__(self, config: SessionConfig) -> None:
        self._config = config

    def _store(self) -> SessionStore:
        from litestar_flash_sessions.stores.base import SessionStore

        store = self._config.store
        if not isinstance(store, SessionStore):
            raise UnsupportedStoreError(
                f"{type(store).__name__} keeps each session in its browser, out of the server's reach: it "
                "cannot list or revoke a user's sessions. Use a server-side store (MemoryStore, "
                "SQLiteStore, PostgresStore, RedisStore, MongoStore, WebdisStore) for per-user sessions"
            )
        return store

    async def list_sessions(self, user_id: str | None, *, current: str | None = None) -> list[SessionInfo]:
        """Return the user's live sessions, oldest first; prune the index of dead ones.

        Args:
            user_id: The user; ``None`` (``session.user_id`` of a visitor not logged in): nobody,
                who has no sessions.
            current: The handle of the asking request's session (``session.handle``), to mark it.

        Raises:
            ValueError: ``user_id`` cannot name a user (as for ``bind_user``).
            UnsupportedStoreError: The store is a cookie store.
            StoreUnavailableError: The store could not be reached.
        """
        store = self._store()
        if user_id is None:
            return []
        check_user_id(user_id)
        live = await live_entries(store, self._config, user_id)
        return [
            SessionInfo(
                handle=entry.handle,
                current=entry.handle == current,
                created_at=_utc(record.created_at),
                last_seen=_utc(record.seen_at),
                device=dict(record.device or {}),
            )
            for entry, record in live
        ]

    async def revoke(self, user_id: str | None, handle: str) -> bool:
        """Revoke the user's session named ``handle``; its next request is anonymous.

        Returns:
            Whether the user had a session of that handle.

        Raises:
            UnsupportedStoreError: The store is a cookie store.
            StoreUnavailableError: The store could not be reached.
        """
        return bool(await self._revoke(user_id, lambda entry: entry.handle == handle))

    async def revoke_others(self, user_id: str | None, keep: str | None) -> int:
        """Revoke every session of the user but the one named ``keep`` (the current one).

        A session bound after this call started reading the index survives: the newer login wins.

        Returns:
            How many sessions were revoked.

        Raises:
            UnsupportedStoreError: The store is a cookie store.
            StoreUnavailableError: The store could not be reached.
        """
        return await self._revoke(user_id, lambda entry: entry.handle != keep)

    async def revoke_all(self, user_id: str | None) -> int:
        """Revoke every session of the user ("log out everywhere").

        Returns:
            How many sessions were revoked.

        Raises:
            UnsupportedStoreError: The store is a cookie store.
            StoreUnavailableError: The store could not be reached.
        """
        return await self._revoke(user_id, lambda entry: True)

    async def _revoke(self, user_id: str | None, chosen: Callable[[IndexEntry], bool]) -> int:
        """Revoke the user's sessions ``chosen`` picks (``None``: nobody, who has none).

        Raises:
            ValueError: ``user_id`` cannot name a user (as for ``bind_user``).
        """
        store = self._store()
        if user_id is None:
            return 0
        check_user_id(user_id)
        _, index = await _read_index(store, self._config, index_key(user_id))
        entries = [entry for entry in index.entries if chosen(entry)]
        await revoke_entries(store, self._config, user_id, entries)
        return len(entries)


async def revoke_entries(store: SessionStore, config: SessionConfig, user_id: str, entries: list[IndexEntry]) -> None:
    """Tombstone every key of ``entries``, then unlist them."""
    if not entries:
        return
    pairs = [(entry.handle, key) for entry in entries for key in entry.keys]
    ended = await asyncio.gather(*(revoke_key(store, config, (user_id, handle), key) for handle, key in pairs))
    # A listed key that holds another owner's session stays listed: a login in flight may have
    # listed it and be about to bind it in place (a follower of a rotation); unlisting it now
    # would leave that login live and unlisted. Its own commit unlists it if it loses.
    # The keys a listed one was rotated to (listed by the rotation, perhaps after the index was
    # read) hold a tombstone now too: unlisted with it, or a dead key would stay listed.
    gone = [(handle, key) for (handle, _), keys in zip(pairs, ended, strict=True) for key in keys]
    if gone:
        await update_index(store, config, user_id, _unlisting(gone))


async def live_entries(store: SessionStore, config: SessionConfig, user_id: str) -> list[tuple[IndexEntry, Live]]:
    """Return the user's entries that hold a live session, with it, oldest first; unlist dead keys.

    A listed key may be about to be written (a login lists its key first), so a key is unlisted
    only when no write can make it live again: it holds a tombstone, or it held nothing or an
    expired session and a tombstone replaced exactly that (a compare-and-set on what was read:
    a login in flight there, or a request in flight that loaded the session before it expired,
    then loses its write; if it wrote first, the key stays listed). A key that holds another
    user's session (it was bound anew) is unlisted once its listing is older than any request in
    flight (``TOMBSTONE_SECONDS``).
    """
    _, index = await _read_index(store, config, index_key(user_id))
    keys = [(entry, key) for entry in index.entries for key in entry.keys]
    raws = await asyncio.gather(*(store.get(key, None) for _, key in keys))
    now = store.now()
    live: dict[str, tuple[IndexEntry, Live]] = {}
    dead: list[tuple[str, str]] = []
    ending: list[tuple[str, str, bytes | None]] = []
    for (entry, key), raw in zip(keys, raws, strict=True):
        record = _decoded(config, key, raw)
        if isinstance(record, Live):
            if record.owner != (user_id, entry.handle):
                if now - entry.listed_at >= TOMBSTONE_SECONDS:
                    dead.append((entry.handle, key))
                # else: perhaps about to be bound to this user
            elif not lifetime.is_dead(record, config, now):
                live.setdefault(entry.handle, (entry, record))
            else:  # expired, but a request that loaded it in time may still write it back
                ending.append((entry.handle, key, raw))
        elif record is None:
            ending.append((entry.handle, key, raw))
        else:
            dead.append((entry.handle, key))
    if ending:
        ended = encode(Ended())
        won = await asyncio.gather(
            *(store.set(key, seal(config.record_sealer, key, ended), TOMBSTONE_SECONDS, raw) for _, key, raw in ending)
        )
        dead += [(handle, key) for (handle, key, _), wrote in zip(ending, won, strict=True) if wrote]
    if dead:
        await update_index(store, config, user_id, _unlisting(dead))
    return sorted(live.values(), key=lambda pair: pair[0].created_at)


async def enforce_cap(store: SessionStore, config: SessionConfig, owner: Owner) -> None:
    """Revoke the user's oldest sessions beyond ``SessionConfig.max_sessions_per_user``, counting
    those older than ``owner``'s and it (never ``owner``'s, never a newer one).
    """
    cap = config.max_sessions_per_user
    if cap is None:
        return
    _, index = await _read_index(store, config, index_key(owner[0]))
    if len(index.entries) <= cap:
        return  # dead entries count too: only a list over the cap is worth reading
    live = [entry for entry, _ in await live_entries(store, config, owner[0])]
    position = next((i for i, entry in enumerate(live) if entry.handle == owner[1]), None)
    if position is None:
        return  # this session is not live any more (revoked meanwhile): nothing to make room for
    # Only sessions older than this one: a newer login, bound concurrently, enforces the cap for
    # itself (counting this one), so that two logins never revoke each other.
    older = live[:position]
    excess = len(older) + 1 - cap
    if excess > 0:
        await revoke_entries(store, config, owner[0], older[:excess])


def _utc(timestamp: float) -> datetime:
    return datetime.fromtimestamp(timestamp, tz=UTC)


UserSessions: TypeAlias = NamedDependency[SkipValidation[UserSessionManager]]
"""Annotate a handler parameter ``user_sessions: UserSessions`` to receive the plugin's
:class:`UserSessionManager` (as ``session: Session`` receives the session)."""
