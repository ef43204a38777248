"""Committing a session to a server-side record store: one rule for every transition.

Every transition (write, logout, emptying, rotation) is decided against the record the request
read and written with a compare-and-set on it. When the compare fails, another request committed
first: the request reads what the store now holds, replays its own changes on it
(:func:`~litestar_flash_sessions.draft.replay`) and decides again. :func:`decide` is that decision,
a pure function; :func:`commit` runs it against the store until a write wins. The guarantees it
gives are the table in docs/concurrency.md.
"""

from __future__ import annotations

import asyncio
import logging
import random
import secrets
from typing import TYPE_CHECKING, Final, NamedTuple

import msgspec

from litestar_flash_sessions.backend import EXPIRE, NOTHING, Outcome
from litestar_flash_sessions.draft import replay
from litestar_flash_sessions.record import TOMBSTONE_SECONDS, Ended, Live, Moved, decode, encode

if TYPE_CHECKING:
    from litestar_flash_sessions.backend import Loaded
    from litestar_flash_sessions.draft import Draft
    from litestar_flash_sessions.stores.base import SessionStore

__all__ = ("AS_LOADED", "MAX_ATTEMPTS", "Plan", "SessionLocks", "commit", "decide", "new_session_id", "read_record")

logger = logging.getLogger("litestar_flash_sessions")

MAX_ATTEMPTS: Final = 24
"""Compare-and-sets one commit tries before it gives up (a 503); the request's time-out bounds it too."""
_BACKOFF_BASE, _BACKOFF_CAP = 0.001, 0.05
"""Seconds: the jittered wait after the second and later conflicts doubles from the base to the cap."""

Record = Live | Moved | Ended

AS_LOADED: Final = Live({}, [])
"""Stands for the record the request loaded, as ``current`` of :func:`decide`: the draft already
holds its content with the request's changes, so there is nothing to replay."""


def new_session_id() -> str:
    """Return a fresh session id: 256 random bits from :mod:`secrets`, URL-safe base64."""
    return secrets.token_urlsafe(32)


class Plan(NamedTuple):
    """What :func:`decide` says to do with one key."""

    record: bytes | None
    """The bytes to compare-and-set at the key, ``None`` to write nothing."""
    ttl: int | None
    """Their expiry, in seconds."""
    outcome: Outcome
    """What the response carries if the write wins (or at once, when nothing is written)."""
    move: bool = False
    """Write ``record`` under a new id, then leave a :class:`Moved` at the key (a rotation)."""


def _short(ttl: int | None) -> int:
    """Return the expiry of a tombstone or an emptied session: as the session's, at most an hour."""
    return TOMBSTONE_SECONDS if ttl is None else min(ttl, TOMBSTONE_SECONDS)


_KEEP: Final = Plan(None, None, NOTHING)
_GONE: Final = Plan(None, None, EXPIRE)


def decide(draft: Draft, current: Record | None, base: bytes | None, *, followed: bool, ttl: int | None) -> Plan:
    """Decide one commit of an existing session against what its key holds now.

    Args:
        draft: What the request changed.
        current: The record at the key now (``None``: nothing, or expired; :data:`AS_LOADED`: the
            one the request loaded), never a :class:`Moved` (the caller follows those).
        base: The bytes of ``current``, to tell a real change from a replay that changes nothing.
        followed: The key is not the one the request's cookie names: the session was rotated by
            another request after this one loaded it. Then this response sets no cookie (the
            browser gets the new id from the rotating response; this one must not reveal it to a
            holder of the old id), and a rotation this request asked for has happened already.
        ttl: The session's idle timeout in seconds, ``None`` for never.
    """
    if not isinstance(current, Live):
        return _GONE  # logged out, revoked or expired: the logout wins, nothing comes back
    if draft.delete:
        return Plan(encode(Ended()), _short(ttl), EXPIRE)
    content, redelivered = (draft.content(), False) if current is AS_LOADED else replay(draft, current)
    if draft.rotate and not followed and not content.is_empty:
        return Plan(encode(content), ttl, Outcome(retry_flash=redelivered), move=True)
    record = encode(content)
    outcome = Outcome(retry_flash=True) if redelivered else NOTHING
    if record == base:
        return Plan(None, None, outcome)  # the store already holds exactly this
    # An emptied session keeps its record (briefly) rather than being deleted: a concurrent write
    # that lands after it must find the session, not a logout.
    return Plan(record, _short(ttl) if content.is_empty else ttl, outcome)


class _Lock:
    __slots__ = ("last", "lock", "users")

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.users = 0
        self.last: bytes | None = None  # the bytes the previous holder wrote at the key


class SessionLocks:
    """One lock per session key, so that the commits of one session in one process take turns.

    Without it, K concurrent requests of one session would each fail their compare-and-set up to
    K times. With it, each holder also learns what the previous one wrote, so it usually wins at
    the first try without reading the store again. Entries exist only while someone holds or
    waits for them.
    """

    __slots__ = ("_locks",)

    def __init__(self) -> None:
        self._locks: dict[str, _Lock] = {}

    async def acquire(self, key: str) -> _Lock:
        """Wait for the key's lock and return it (release it with :meth:`release`)."""
        entry = self._locks.get(key)
        if entry is None:
            entry = self._locks[key] = _Lock()
        entry.users += 1
        try:
            await entry.lock.acquire()
        except BaseException:
            self._leave(key, entry)
            raise
        return entry

    def release(self, key: str, entry: _Lock) -> None:
        """Release the key's lock."""
        entry.lock.release()
        self._leave(key, entry)

    def _leave(self, key: str, entry: _Lock) -> None:
        entry.users -= 1
        if not entry.users:
            del self._locks[key]


async def read_record(store: SessionStore, key: str, expires_in: int | None) -> tuple[bytes | None, Record | None]:
    """Read the key's bytes and decode them; a corrupt record counts as none (and is logged).

    Raises:
        StoreUnavailableError: The store could not be reached.
    """
    raw = await store.get(key, expires_in)
    if raw is None:
        return None, None
    try:
        return raw, decode(raw)
    except msgspec.DecodeError:
        logger.warning("corrupt session record in %s; starting a fresh session", type(store).__name__)
        return None, None


async def commit(store: SessionStore, loaded: Loaded, ttl: int | None) -> Outcome:
    """Commit the request's changes to ``store``, replaying them after each conflict.

    Raises:
        StoreUnavailableError: The store could not be reached, or ``MAX_ATTEMPTS`` conflicts in a
            row (then nothing this request changed was written).
    """
    draft = loaded.draft
    if not (draft.modified or draft.delete or draft.rotate):
        return NOTHING  # only read: the load already slid the expiry
    if loaded.key is None:
        return await _create(store, draft, ttl)
    key = loaded.key
    locks = store.locks
    entry = await locks.acquire(key)
    try:
        return await _commit_existing(store, entry, key, loaded.base, draft, ttl=ttl)
    finally:
        locks.release(key, entry)


async def _create(store: SessionStore, draft: Draft, ttl: int | None) -> Outcome:
    """Store a session that had no id under a new one (nobody else knows it: no conflict)."""
    content = draft.content()
    if draft.delete or content.is_empty:
        return NOTHING  # no record, no cookie: nothing per anonymous visitor
    record = encode(content)
    for _ in range(3):  # a collision of 256-bit ids does not happen; an expired row is replaced
        session_id = new_session_id()
        if await store.set(session_id, record, ttl, None):
            return Outcome(cookie=session_id)
    raise store.unavailable("could not store a new session under a fresh id")


async def _commit_existing(
    store: SessionStore, entry: _Lock, key: str, base: bytes | None, draft: Draft, *, ttl: int | None
) -> Outcome:
    current: Record | None = AS_LOADED
    if entry.last is not None and entry.last != base:
        # A request of this process committed since we loaded: start from what it wrote.
        base, current = entry.last, decode(entry.last)
    followed = False
    rotated: tuple[str, bytes] | None = None  # the new id, and what we wrote under it
    for attempt in range(MAX_ATTEMPTS):
        while isinstance(current, Moved):  # rotated by another request: the session lives on there
            key, followed = current.to, True
            base, current = await read_record(store, key, None)
        plan = decide(draft, current, base, followed=followed, ttl=ttl)
        if plan.record is None:
            await _drop_unused(store, rotated)
            return plan.outcome
        if plan.move:
            new_id = rotated[0] if rotated else new_session_id()
            if not await store.set(new_id, plan.record, ttl, rotated[1] if rotated else None):
                raise store.unavailable("the new id of a rotated session was taken")
            rotated = (new_id, plan.record)
            if await store.set(key, moved := encode(Moved(new_id)), _short(ttl), base):
                entry.last = None if followed else moved
                return plan.outcome._replace(cookie=new_id)
        elif await store.set(key, plan.record, plan.ttl, base):
            if not followed:
                entry.last = plan.record
            await _drop_unused(store, rotated)
            return plan.outcome
        if attempt:  # the first conflict is the expected one: retry at once, then back off
            await asyncio.sleep(random.uniform(0, min(_BACKOFF_CAP, _BACKOFF_BASE * 2**attempt)))  # noqa: S311
        base, current = await read_record(store, key, None)
    raise store.unavailable(f"the session kept changing under {MAX_ATTEMPTS} concurrent commits")


async def _drop_unused(store: SessionStore, rotated: tuple[str, bytes] | None) -> None:
    """Delete the record a rotation wrote under a new id that it then could not publish."""
    if rotated is not None:
        await store.delete(rotated[0])
