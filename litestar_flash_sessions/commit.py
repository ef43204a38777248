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
import binascii
import contextlib
import hashlib
import logging
import secrets
from collections import deque
from typing import TYPE_CHECKING, Any, Final

import msgspec

from litestar_flash_sessions import lifetime, users
from litestar_flash_sessions.backend import EXPIRE, NOTHING, Outcome
from litestar_flash_sessions.conflicts import MAX_ATTEMPTS, back_off
from litestar_flash_sessions.draft import delivered_ids, redelivered, replay
from litestar_flash_sessions.record import (
    TOMBSTONE_SECONDS,
    UNDECODABLE,
    Ended,
    Live,
    Moved,
    decode,
    encode,
    seal,
    unseal,
)
from litestar_flash_sessions.session import SessionTooLargeError, UnstorableValueError

if TYPE_CHECKING:
    from litestar_flash_sessions.backend import Loaded
    from litestar_flash_sessions.config import SessionConfig
    from litestar_flash_sessions.draft import Draft
    from litestar_flash_sessions.stores.base import SessionStore

__all__ = (
    "AS_LOADED",
    "MAX_ATTEMPTS",
    "Plan",
    "SessionLocks",
    "commit",
    "decide",
    "new_session_id",
    "open_record",
    "read_record",
    "short_ttl",
    "store_key",
)

logger = logging.getLogger("litestar_flash_sessions")


Record = Live | Moved | Ended
Owner = tuple[str, str]

AS_LOADED: Final = Live({}, [])
"""Stands for the record the request loaded, as ``current`` of :func:`decide`: the draft already
holds its content with the request's changes, so there is nothing to replay."""


def new_session_id() -> str:
    """Return a fresh session id: 256 random bits from :mod:`secrets`, URL-safe base64."""
    return secrets.token_urlsafe(32)


_sha256 = hashlib.sha256
_URLSAFE = bytes.maketrans(b"+/", b"-_")


def store_key(session_id: str) -> str:
    """Return the key a session's record is stored under: the SHA-256 of its id, URL-safe base64.

    Never the id itself, so that a dump of the store (a ``KEYS``, a table, a Webdis URL in a log)
    holds nothing a cookie could replay.
    """
    # The 43 characters of the digest's base64 without its padding, in the URL-safe alphabet.
    return binascii.b2a_base64(_sha256(session_id.encode()).digest())[:43].translate(_URLSAFE).decode()


class Plan(msgspec.Struct, frozen=True):
    """What :func:`decide` says to do with one key (a ``msgspec.Struct``: made in C, per commit)."""

    record: bytes | None
    """The bytes to compare-and-set at the key, ``None`` to write nothing."""
    ttl: int | None
    """Their expiry, in seconds."""
    outcome: Outcome
    """What the response carries if the write wins (or at once, when nothing is written)."""
    move: bool = False
    """Write ``record`` under a new id, then leave a :class:`Moved` at the key (a rotation)."""
    content: Live | None = None
    """What ``record`` encodes, when it is a session (not a tombstone)."""


def short_ttl(ttl: int | None) -> int:
    """Return the expiry of a tombstone or an emptied session: as the session's, at most an hour."""
    return TOMBSTONE_SECONDS if ttl is None else min(ttl, TOMBSTONE_SECONDS)


_ENDED_ELSEWHERE: Final = Outcome(expire=True)
"""The outcome of a commit that found the session ended already (logged out, revoked, expired):
the cookie is expired. Not :data:`EXPIRE` itself, so that a logout tells it from its own end."""
_SHOWN_AND_ENDED_ELSEWHERE: Final = Outcome(expire=True, retry_flash=True)
"""As :data:`_ENDED_ELSEWHERE`, when the request that ended it showed a flash this one would show."""
_GONE: Final = Plan(None, None, _ENDED_ELSEWHERE)
_GONE_SHOWN: Final = Plan(None, None, _SHOWN_AND_ENDED_ELSEWHERE)


def encode_within_limit(draft: Draft, content: Live, stored: bytes | None) -> bytes:
    """Return ``content``, the session the request leaves, encoded to replace ``stored`` (the
    encoded session it replaces; ``None`` for a new one).

    Raises:
        UnstorableValueError: A value is nested deeper than msgspec can encode here.
        SessionTooLargeError: It is over the draft's ``max_size`` and larger than ``stored``: a
            value grew in place (``set`` checks what it is given, not what is done to it
            afterwards), or concurrent requests' changes together outgrew the limit. Nothing is
            written. A session stored over the limit already (a limit lowered since) may still
            shrink, be read or touched: refusing those would leave its user stuck.
    """
    try:
        record = encode(content)
    except RecursionError as exc:  # set() checked the value where it was given, with less around it
        raise UnstorableValueError("a session value is nested too deeply to be stored") from exc
    if len(record) > draft.max_size and (stored is None or len(record) > len(stored)):
        raise SessionTooLargeError(
            f"the session would be {len(record)} bytes, over its limit of {draft.max_size} "
            "(SessionConfig.max_size_bytes or the store's): a value grew in place past it"
        )
    return record


def survivors_record(draft: Draft, survivors: Live) -> bytes | None:
    """Return what the request did after ``delete_session()`` encoded for its fresh session, or
    ``None`` (logged) when it grew in place past the limit or is nested too deeply to encode:
    the logout stands without it.
    """
    try:
        return encode_within_limit(draft, survivors, None)
    except (SessionTooLargeError, UnstorableValueError) as exc:
        logger.warning("what followed delete_session() was not kept: %s", exc)
        return None


def _ended_elsewhere(outcome: Outcome) -> bool:
    return outcome is _ENDED_ELSEWHERE or outcome is _SHOWN_AND_ENDED_ELSEWHERE


def _gone(draft: Draft, current: Record | None) -> Plan:
    """Return the plan of a commit that finds the session ended: nothing comes back, and a flash
    the ending request showed is not shown again.
    """
    if isinstance(current, Ended) and any(draft.consumed.get(flash_id) for flash_id in current.shown):
        return _GONE_SHOWN
    return _GONE


def _ending(draft: Draft, config: SessionConfig, *, shown_elsewhere: bool) -> Plan:
    """Return the plan of a commit that ends the session: an ``Ended`` tombstone naming the
    flashes this request showed, and the cookie expired (with the retry when another request
    showed one first).
    """
    # Not _SHOWN_AND_ENDED_ELSEWHERE: this request ended the session, what it did after lives on.
    outcome = Outcome(expire=True, retry_flash=True) if shown_elsewhere else EXPIRE
    return Plan(encode(Ended(delivered_ids(draft))), short_ttl(config.ttl), outcome)


def decide(
    draft: Draft,
    current: Record | None,
    plain: bytes | None,
    *,
    followed: bool,
    config: SessionConfig,
    now: float,
) -> Plan:
    """Decide one commit of an existing session against what its key holds now.

    Args:
        draft: What the request changed.
        current: The record at the key now (``None``: nothing, or expired; :data:`AS_LOADED`: the
            one the request loaded), never a :class:`Moved` (the caller follows those).
        plain: The encoded ``current`` (unsealed), to tell a real change from a replay that
            changes nothing.
        followed: The key is not the one the request's cookie names: the session was rotated by
            another request after this one loaded it. Then this response sets no cookie (the
            browser gets the new id from the rotating response; this one must not reveal it to a
            holder of the old id), and a rotation this request asked for has happened already.
        config: The lifetimes.
        now: The time of the commit (seconds since the epoch).
    """
    if not isinstance(current, Live) or (current is not AS_LOADED and lifetime.is_dead(current, config, now)):
        return _gone(draft, current)  # logged out, revoked or expired: the logout wins, nothing comes back
    if draft.delete:
        return _ending(draft, config, shown_elsewhere=current is not AS_LOADED and redelivered(draft, current))
    content, shown_elsewhere = (draft.content(now), False) if current is AS_LOADED else replay(draft, current, now)
    ttl = lifetime.store_ttl(content, config, now)
    if draft.rotate and not followed:
        if content.is_empty:
            # A rotation of a session left empty (a logout to anonymous, an unbinding of a bare
            # binding) ends it: its old id must stop working, and an empty session needs no new one.
            return _ending(draft, config, shown_elsewhere=shown_elsewhere)
        outcome = Outcome(retry_flash=shown_elsewhere, max_age=lifetime.cookie_max_age(content, config))
        return Plan(encode_within_limit(draft, content, plain), ttl, outcome, True, content)
    record = encode_within_limit(draft, content, plain)
    outcome = Outcome(retry_flash=True) if shown_elsewhere else NOTHING
    if record == plain:
        return Plan(None, None, outcome)  # the store already holds exactly this
    # An emptied session keeps its record (briefly) rather than being deleted: a concurrent write
    # that lands after it must find the session, not a logout.
    return Plan(record, short_ttl(ttl) if content.is_empty else ttl, outcome, False, content)


class _Lock(msgspec.Struct):
    """One key's lock (a ``msgspec.Struct``, made in C: a commit takes one per request)."""

    users: int = 1  # made for its first holder
    waiters: deque[asyncio.Future[None]] | None = None  # the next holders, in turn (made when needed)
    last: tuple[bytes, bytes] | None = None  # what the previous holder stored at the key, and unsealed


class SessionLocks:
    """One lock per session key, so that the commits of one session in one process take turns.

    Without it, K concurrent requests of one session would each fail their compare-and-set up to
    K times. With it, each holder also learns what the previous one wrote, so it usually wins at
    the first try without reading the store again. Entries exist only while someone holds or
    waits for them. A lock nobody holds is taken at once, without an ``asyncio.Lock`` (a commit
    per request pays for this): the waiters, first come first served, wait on a future each,
    and the holder hands the lock to the first of them when it releases it.
    """

    __slots__ = ("_locks",)

    def __init__(self) -> None:
        self._locks: dict[str, _Lock] = {}

    def take(self, key: str) -> _Lock | None:
        """Take the key's lock if nobody holds it (release it with :meth:`release`), else ``None``."""
        if key in self._locks:
            return None
        entry = self._locks[key] = _Lock()
        return entry

    async def acquire(self, key: str) -> _Lock:
        """Wait for the key's lock and return it (release it with :meth:`release`)."""
        entry = self._locks.get(key)
        if entry is None:
            entry = self._locks[key] = _Lock()
            return entry
        entry.users += 1
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        waiters = entry.waiters
        if waiters is None:
            waiters = entry.waiters = deque()
        waiters.append(waiter)
        try:
            await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                self.release(key, entry)  # handed the lock as it was cancelled: hand it on
            else:
                with contextlib.suppress(ValueError):  # a release may have skipped it already
                    waiters.remove(waiter)
                self._leave(key, entry)
            raise
        return entry

    def release(self, key: str, entry: _Lock) -> None:
        """Release the key's lock."""
        waiters = entry.waiters
        while waiters:  # None or empty: nobody waits
            waiter = waiters.popleft()
            if not waiter.done():  # a cancelled waiter gives up its turn
                waiter.set_result(None)
                break
        self._leave(key, entry)

    def _leave(self, key: str, entry: _Lock) -> None:
        entry.users -= 1
        if not entry.users:
            del self._locks[key]


async def read_record(
    store: SessionStore, key: str, expires_in: int | None, sealer: Any = None
) -> tuple[bytes | None, bytes | None, Record | None]:
    """Read the key's bytes, unseal and decode them; a corrupt record counts as none (logged).

    Returns:
        The stored bytes (the compare-and-set base), the encoded record, and the record.

    Raises:
        StoreUnavailableError: The store could not be reached.
    """
    return open_record(store, key, await store.get(key, expires_in), sealer)


def open_record(
    store: SessionStore, key: str, raw: bytes | None, sealer: Any = None
) -> tuple[bytes | None, bytes | None, Record | None]:
    """Unseal and decode the bytes ``raw`` read at ``key`` (as :func:`read_record`, without the read)."""
    if raw is None:
        return None, None, None
    plain = unseal(sealer, key, raw)
    try:
        if plain is None:
            raise msgspec.DecodeError("the record does not open with the encryption secret")
        return raw, plain, decode(plain)
    except UNDECODABLE:
        logger.warning("corrupt session record in %s; starting a fresh session", type(store).__name__)
        return None, None, None


async def commit(store: SessionStore, loaded: Loaded, config: SessionConfig) -> Outcome:
    """Commit the request's changes to ``store``, replaying them after each conflict.

    Raises:
        StoreUnavailableError: The store could not be reached, or ``MAX_ATTEMPTS`` conflicts in a
            row (then nothing this request changed was written).
    """
    draft = loaded.draft
    if not draft.writes:
        return NOTHING  # only read: the load already slid the expiry
    key = loaded.key
    if key is None:
        return await _create(store, draft, config)
    locks = store.locks
    entry = locks.take(key)
    if entry is None:
        entry = await locks.acquire(key)
    try:
        base = loaded.base
        last = entry.last
        if not (draft.delete or draft.rotate or draft.user_set) and (last is None or last[0] == base):
            # The usual commit: the record as loaded, nothing else of this process committed since,
            # no rotation, logout or binding (so no user index to keep): one compare-and-set of
            # decide()'s plan, without the general loop's setup; a conflict goes the general way.
            plan = decide(draft, AS_LOADED, loaded.plain, followed=False, config=config, now=store.now())
            if plan.record is None:
                return plan.outcome
            stored = seal(config.record_sealer, key, plan.record)
            if await store.set(key, stored, plan.ttl, base):
                entry.last = (stored, plan.record)
                return _resend_cookie(plan.outcome, loaded, config, followed=False)
            outcome = await _commit_existing(store, entry, loaded, config, conflicted=True)
        else:
            outcome = await _commit_existing(store, entry, loaded, config)
    finally:
        locks.release(key, entry)
    if draft.delete and outcome.expire:
        # What the request did after delete_session() ("You have been logged out", a login as
        # someone else) lives on in a fresh session; only its flashes when the session had ended
        # already (revoked, logged out elsewhere): what a revoked session did must not come back.
        created = await _create(
            store,
            draft,
            config,
            otherwise=outcome,
            flashes_only=_ended_elsewhere(outcome),
            retrying=outcome.retry_flash,
        )
        return created._replace(retry_flash=True) if outcome.retry_flash else created
    return outcome


async def _create(
    store: SessionStore,
    draft: Draft,
    config: SessionConfig,
    otherwise: Outcome = NOTHING,
    *,
    flashes_only: bool = False,
    retrying: bool = False,
) -> Outcome:
    """Store a session that had no id under a new one (nobody else knows it: no conflict); with
    nothing to store, return ``otherwise``. After ``delete_session()``, what the request did
    after it is stored (``flashes_only``: its flashes alone; ``retrying``: the ending's response
    becomes a retry, so the flashes it added and showed are kept too).
    """
    now = store.now()
    content = draft.survivors(now, flashes_only=flashes_only, retrying=retrying) if draft.delete else draft.content(now)
    if content is None or content.is_empty:
        return otherwise  # no record, no cookie: nothing per anonymous visitor
    record = survivors_record(draft, content) if draft.delete else encode_within_limit(draft, content, None)
    if record is None:
        return otherwise
    plan = Plan(record, lifetime.store_ttl(content, config, now), NOTHING, False, content)
    for _ in range(3):  # a fresh id is taken only when a revocation tombstoned the key it listed
        session_id = new_session_id()
        if await _write(store, config, store_key(session_id), plan, None, before=None, after=content.owner) is not None:
            await _bound(store, config, None, content.owner)
            return Outcome(cookie=session_id, max_age=lifetime.cookie_max_age(content, config))
    raise store.unavailable("could not store a new session under a fresh id")


async def _commit_existing(
    store: SessionStore, entry: _Lock, loaded: Loaded, config: SessionConfig, *, conflicted: bool = False
) -> Outcome:
    """Commit an existing session: the general loop (``conflicted``: the first compare-and-set,
    of the record as loaded, failed already: start from what the store holds now).
    """
    draft, key, base = loaded.draft, loaded.key, loaded.base
    assert key is not None
    sealer = config.record_sealer
    plain: bytes | None = loaded.plain
    current: Record | None = AS_LOADED
    first = 0
    if conflicted:
        base, plain, current = await read_record(store, key, None, sealer)
        first = 1
    elif entry.last is not None and entry.last[0] != base:
        # A request of this process committed since we loaded: start from what it wrote.
        base, plain = entry.last
        current = decode(plain)
    followed = False
    for attempt in range(first, MAX_ATTEMPTS):
        while isinstance(current, Moved):  # rotated by another request: the session lives on there
            key, followed = current.to, True
            base, plain, current = await read_record(store, key, None, sealer)
        now = store.now()
        plan = decide(draft, current, plain, followed=followed, config=config, now=now)
        if plan.record is None:
            return plan.outcome
        before = draft.loaded_owner if current is AS_LOADED else current.owner if isinstance(current, Live) else None
        after = None if plan.content is None else plan.content.owner
        if plan.move:
            new_id = new_session_id()
            if await _write(store, config, store_key(new_id), plan, None, before=None, after=after) is not None:
                moved = encode(Moved(store_key(new_id)))
                if await store.set(key, moved_stored := seal(sealer, key, moved), short_ttl(config.ttl), base):
                    entry.last = None if followed else (moved_stored, moved)
                    if before is not None:
                        await users.unlist_key(store, config, before, key)
                    await _bound(store, config, before, after)
                    return plan.outcome._replace(cookie=new_id)
                await _drop_unused(store, config, store_key(new_id), after)
        elif (stored := await _write(store, config, key, plan, base, before=before, after=after)) is not None:
            if not followed:
                entry.last = (stored, plan.record)
            await _bound(store, config, before, after)
            return _resend_cookie(plan.outcome, loaded, config, followed=followed)
        await back_off(attempt)
        base, plain, current = await read_record(store, key, None, sealer)
    raise store.unavailable(f"the session kept changing under {MAX_ATTEMPTS} concurrent commits")


async def _write(
    store: SessionStore,
    config: SessionConfig,
    key: str,
    plan: Plan,
    base: bytes | None,
    *,
    before: Owner | None,
    after: Owner | None,
) -> bytes | None:
    """Compare-and-set the plan's record at ``key``, keeping the user's index a superset of the
    live sessions: a key is listed before a bound record is written there, and unlisted after
    it stops holding one (docs/users.md). ``before`` is the user and handle of the record the
    write replaces, ``after`` those of the record it writes (``None`` when not bound).

    Returns:
        What was stored (the record, sealed when records are encrypted), ``None`` on a conflict.
    """
    assert plan.record is not None
    binding = after if after != before else None
    if binding is not None:
        await users.list_key(store, config, binding, key)
    stored = seal(config.record_sealer, key, plan.record)
    if not await store.set(key, stored, plan.ttl, base):
        if binding is not None:
            await users.unlist_key(store, config, binding, key)
        return None
    if before is not None and before != after:
        await users.unlist_key(store, config, before, key)
    return stored


async def _bound(store: SessionStore, config: SessionConfig, before: Owner | None, after: Owner | None) -> None:
    """After a write that bound a session to a user: keep the user within ``max_sessions_per_user``."""
    if after is not None and after != before and config.max_sessions_per_user is not None:
        await users.enforce_cap(store, config, after)


def _resend_cookie(outcome: Outcome, loaded: Loaded, config: SessionConfig, *, followed: bool) -> Outcome:
    """Return the outcome of a write that kept the id: a persistent cookie is sent again when
    its ``Max-Age`` must slide (about once a minute) or changed (``set_expiry``).
    """
    draft = loaded.draft
    if followed or outcome.expire or not (draft.lifetime_set or draft.stale):
        return outcome  # an expiry stays one: the id it would send again is dead
    max_age = draft.lifetime or config.cookie_max_age
    if max_age is None and not draft.lifetime_set:
        return outcome
    return outcome._replace(cookie=loaded.session.id, max_age=max_age)


async def _drop_unused(store: SessionStore, config: SessionConfig, key: str, owner: Owner | None) -> None:
    """Delete the record a rotation wrote under a new id that it then could not publish (and unlist it)."""
    await store.delete(key)
    if owner is not None:
        await users.unlist_key(store, config, owner, key)
