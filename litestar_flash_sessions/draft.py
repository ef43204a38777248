"""A request's working copy of its session, and how its changes are replayed on newer content.

The session object handlers receive (:class:`~litestar_flash_sessions.session.FlashSession`) reads
and changes a :class:`Draft`; the commit machinery reads the same draft to decide what to write.
When another request committed first, :func:`replay` applies this request's changes (and only
them) to what the store now holds, so that neither request loses the other's work.
"""

from __future__ import annotations

import secrets
import sys
from operator import attrgetter
from typing import Any, Final

import msgspec

from litestar_flash_sessions.record import Flash, Live

__all__ = ("DELETED", "Draft", "delivered_ids", "new_handle", "redelivered", "replay")

DELETED: Final = object()
"""Marks a key the request deleted, in :attr:`Draft.written`."""


def new_handle() -> str:
    """Return a fresh handle for a session bound to a user: 128 random bits, URL-safe base64."""
    return secrets.token_urlsafe(16)


class Draft(msgspec.Struct):
    """What handlers see of the session, and the log of what they changed.

    Make one with :meth:`of`. A ``msgspec.Struct``: a load makes one per request, and a Struct
    sets its two dozen fields in C (a Python ``__init__`` took three times the instructions).
    """

    data: dict[str, Any]
    """The values, with this request's changes."""
    flashes: list[Flash]
    """The pending flashes, with this request's changes."""
    next_flash_id: int
    own_from: int
    """Flashes with an id from here on were added by this request (ids it provisionally gave)."""
    created_at: float
    lifetime: int | None
    user: str | None
    handle: str | None
    device: dict[str, str] | None
    loaded_owner: tuple[str, str] | None
    """The user and handle of the record as loaded (what its user's index lists it under)."""
    size: int = 0
    """An upper bound of the encoded session's size: grows with every ``set`` and ``flash``."""
    written: dict[str, Any] = msgspec.field(default_factory=dict)
    """Keys this request set (their value) or deleted (:data:`DELETED`)."""
    rewritten: bool = False
    """Whether a set may have given a key a value other than the one it held (a set of the same
    string, number or flag is still in :attr:`written`, so that it wins a conflict, but changes
    nothing to seal anew)."""
    consumed: dict[int, bool] = msgspec.field(default_factory=dict)
    """Loaded flashes this request removed: ``True`` if it delivered them, ``False`` if withdrawn."""
    delete: bool = False
    delete_from: int | None = None
    """The first flash id added after ``delete_session()``: those survive into a fresh session."""
    rotate: bool = False
    now_next: int = 0
    """The last id given to a flash for this request only (``flash(now=True)``): negative, never stored."""
    shown: list[Flash] = msgspec.field(default_factory=list)
    """The flashes this request consumed, in order (``keep()`` puts them back)."""
    lifetime_set: bool = False
    """Whether the request gave the session a lifetime of its own (``set_expiry``)."""
    user_set: bool = False
    """Whether the request bound or unbound the session (``bind_user``, ``unbind_user``)."""
    touch: bool = False
    """Whether the record must be written even if nothing changed (see ``lifetime.needs_touch``)."""
    stale: bool = False
    """Whether ``seen_at`` is ``TOUCH_SECONDS`` old: a persistent cookie's ``Max-Age`` slides now."""
    max_size: int = sys.maxsize
    """The most bytes the encoded session may take (``SessionConfig.max_size_bytes``, or less
    for a backend with a smaller limit)."""
    committed: bool = False
    """Set once the response started: a change after that could not be saved."""
    id_fixed: bool = False
    """Set after a WebSocket's handshake: the id can no longer change (no cookie can reach the
    browser), so a rotation, a binding or a logout raises."""
    can_retry: bool = True
    """Whether the response can become a retry when a flash it showed was shown by a concurrent
    request (a WebSocket's messages cannot: they go out whatever the commit finds)."""

    @classmethod
    def of(cls, loaded: Live, size: int = 0) -> Draft:
        """Return the draft of ``loaded``, which it takes ownership of (its containers are the
        draft's), with ``size`` (the loaded record's size in bytes) as the start of the size estimate.
        """
        next_id = loaded.next_flash_id
        return cls(
            loaded.data,
            loaded.flashes,
            next_id,
            next_id,
            loaded.created_at,
            loaded.lifetime,
            loaded.user,
            loaded.handle,
            loaded.device,
            loaded.owner,
            size,
        )

    @property
    def modified(self) -> bool:
        """Whether the request changed a value, a flash or the session's lifetime."""
        return bool(self.written) or self._changed_besides_values

    @property
    def writes(self) -> bool:
        """Whether a server-side store's commit has anything to write (else it only read)."""
        return self.modified or self.delete or self.rotate or self.touch

    @property
    def changed(self) -> bool:
        """As :attr:`modified`, but a set of the value a key already held counts for nothing."""
        return self.rewritten or self._changed_besides_values

    @property
    def _changed_besides_values(self) -> bool:
        return bool(self.consumed or self.next_flash_id != self.own_from or self.lifetime_set or self.user_set)

    def content(self, now: float) -> Live:
        """Return the session's content as this request leaves it at ``now`` (what it would store
        without a conflict).
        """
        flashes = self.flashes if not self.now_next else [flash for flash in self.flashes if flash.id >= 0]
        return Live(
            self.data,
            flashes,
            self.next_flash_id,
            self.created_at or now,
            now,
            self.lifetime,
            self.user,
            self.handle,
            self.device,
        )

    def added_from(self, start: int, *, retrying: bool = False) -> list[Flash]:
        """Return the flashes this request added with an id from ``start`` on, in order: those
        still pending and, when ``retrying`` (the response becomes a retry, its page never
        displayed, where it can), also those it showed.
        """
        if not (retrying and self.can_retry):
            return [flash for flash in self.flashes if flash.id >= start]
        return sorted((flash for flash in (*self.flashes, *self.shown) if flash.id >= start), key=attrgetter("id"))

    def survivors(self, now: float, *, flashes_only: bool = False, retrying: bool = False) -> Live | None:
        """Return the fresh session of what the request changed after ``delete_session()`` (the
        flashes it added, the values it set, the user it bound, the lifetime it gave; with
        ``flashes_only``, the flashes alone), if anything. ``retrying``: see :meth:`added_from`.
        """
        start = self.delete_from
        kept = [] if start is None else self.added_from(start, retrying=retrying)
        renumbered = [Flash(i, flash.key, flash.value, flash.category) for i, flash in enumerate(kept)]
        if flashes_only:
            return Live({}, renumbered, len(kept), now, now) if kept else None
        data = {key: value for key, value in self.written.items() if value is not DELETED}
        if not (kept or data or self.user is not None):
            return None
        return Live(data, renumbered, len(kept), now, now, self.lifetime, self.user, self.handle, self.device)


def replay(draft: Draft, current: Live, now: float) -> tuple[Live, bool]:
    """Apply the draft's changes to ``current``, the content another request stored meanwhile
    (seen at ``now``).

    Keys the draft set or deleted take its value; the other keys keep the newer value. Flashes
    the draft removed are removed by id (a newer flash of the same key stays); flashes it added
    are appended with ids that are new in ``current``. A binding (or unbinding) the draft made
    replaces the user of ``current``; otherwise its user stays. A binding that kept the loaded
    handle gets a new one if ``current`` is no longer bound under it.

    Returns:
        The merged content, and whether a flash the draft delivered had already been removed
        by another request (then this response must not show it a second time: it becomes a
        retry, and the flashes the draft showed stay pending, those the other request showed
        aside, for the page the retry leads to).
    """
    data = dict(current.data)
    for key, value in draft.written.items():
        if value is DELETED:
            data.pop(key, None)
        else:
            data[key] = value
    consumed = draft.consumed
    shown_elsewhere = redelivered(draft, current)
    if shown_elsewhere and draft.can_retry:
        # The response becomes a retry, its page never displayed: what it showed stays pending
        # (the loaded flashes it consumed, the ones it added and showed), except the ones the
        # other request showed, gone from current already. What it withdrew stays withdrawn.
        flashes = [flash for flash in current.flashes if consumed.get(flash.id) is not False]
    else:
        flashes = [flash for flash in current.flashes if flash.id not in consumed]
    next_id = current.next_flash_id
    for flash in draft.added_from(draft.own_from, retrying=shown_elsewhere):
        flashes.append(Flash(next_id, flash.key, flash.value, flash.category))
        next_id += 1
    lifetime = draft.lifetime if draft.lifetime_set else current.lifetime
    bound = draft if draft.user_set else current
    handle = bound.handle
    if draft.user_set and bound.user is not None and (bound.user, handle) == draft.loaded_owner != current.owner:
        # The binding kept the loaded handle (the same user logging in again), but the session was
        # unbound or bound anew since: this is a binding anew, under a handle of its own. Sharing
        # the old one, it would share an index listing with the commit that moved the session
        # away from it, which unlists that listing after its own write (docs/users.md).
        handle = new_handle()
    created_at = current.created_at or now
    merged = Live(data, flashes, next_id, created_at, now, lifetime, bound.user, handle, bound.device)
    return merged, shown_elsewhere


def redelivered(draft: Draft, current: Live) -> bool:
    """Return whether a flash the draft delivered is gone from ``current``: another request,
    which committed first, showed it.
    """
    if not draft.consumed:
        return False
    present = {flash.id for flash in current.flashes}
    return any(delivered and flash_id not in present for flash_id, delivered in draft.consumed.items())


def delivered_ids(draft: Draft) -> list[int]:
    """Return the ids of the loaded flashes the draft delivered (what an ending records)."""
    return [flash_id for flash_id, delivered in draft.consumed.items() if delivered]
