"""The session object handlers receive."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final, TypeVar, overload

import msgspec
from litestar.di import NamedDependency
from litestar.params import SkipValidation

from litestar_flash_sessions.draft import DELETED, Draft
from litestar_flash_sessions.record import Flash

if TYPE_CHECKING:
    from typing import TypeAlias

__all__ = ("FlashSession", "Session", "SessionTooLargeError")

T = TypeVar("T")
D = TypeVar("D")

_MISSING: Final = object()
_encode = msgspec.msgpack.Encoder().encode
_ENTRY_OVERHEAD: Final = 16
"""Bytes a key-value pair or a flash may add to an encoded session beyond its key and value
(MessagePack headers, a flash's id and category): the size estimate is an upper bound."""


class SessionTooLargeError(ValueError):
    """A ``set`` or ``flash`` would make the encoded session larger than its limit
    (``SessionConfig.max_size_bytes``, or what the cookie store's cookies can carry).
    """


class FlashSession:
    """One client's session, loaded before the handler runs.

    Every method is synchronous and touches only memory; the plugin commits the changes (once)
    when the response starts. Values are stored with msgspec's MessagePack encoding, so they
    come back as the types MessagePack knows (a tuple comes back as a list, a ``Struct`` as a
    dict): pass ``type=`` to :meth:`get` to convert them back.

    A mutable value changed in place is not noticed: call :meth:`set` again to store it.

    Args:
        draft: The request's working copy of the session (made by the plugin).
        session_id: The id the session is stored under, ``None`` for a new session.
    """

    __slots__ = ("_draft", "_id")

    def __init__(self, draft: Draft, session_id: str | None = None) -> None:
        self._draft = draft
        self._id = session_id

    @property
    def id(self) -> str | None:
        """The id the session is stored under, or ``None`` if it has never been stored."""
        return self._id

    @overload
    def get(self, key: str, default: None = None, *, type: None = None) -> Any: ...
    @overload
    def get(self, key: str, default: D, *, type: None = None) -> Any | D: ...
    @overload
    def get(self, key: str, default: None = None, *, type: type[T]) -> T | None: ...
    @overload
    def get(self, key: str, default: D, *, type: type[T]) -> T | D: ...

    def get(self, key: str, default: Any = None, *, type: Any = None) -> Any:
        """Return the value stored under ``key``, else its flashed value, else ``default``.

        A flashed value is consumed: no later request sees it. A stored value wins over a
        flashed one of the same name, which then stays pending. When several flashes of ``key``
        are pending, all are consumed and the newest is returned.

        Args:
            key: The key.
            default: Returned when the key is neither stored nor flashed (never converted).
            type: Convert the value with :func:`msgspec.convert` to this type, for example a
                ``msgspec.Struct``, ``datetime`` or ``UUID``.

        Raises:
            msgspec.ValidationError: The value does not convert to ``type``.
        """
        draft = self._draft
        if key in draft.data:
            value = draft.data[key]
        else:
            value = self._take_flashes(key, delivered=True)
            if value is _MISSING:
                return default
        return value if type is None else msgspec.convert(value, type, strict=False)

    def set(self, key: str, value: Any) -> None:
        """Store ``value`` under ``key``; ``None`` deletes the key.

        Raises:
            TypeError: ``key`` is not a string, or msgspec cannot encode ``value``.
            SessionTooLargeError: The session would grow past its size limit (nothing changes).
            RuntimeError: The response has started: the change could not be saved.
        """
        draft = self._draft
        self._check_change(key, value, flash=False)
        if value is None:
            if key in draft.data:
                del draft.data[key]
                draft.written[key] = DELETED
        else:
            draft.data[key] = value
            draft.written[key] = value

    def flash(self, key: str, value: Any) -> None:
        """Store ``value`` until the first :meth:`get` of ``key``, in this or a later request.

        ``None`` withdraws the pending flashes of ``key``.

        Raises:
            TypeError: ``key`` is not a string, or msgspec cannot encode ``value``.
            SessionTooLargeError: The session would grow past its size limit (nothing changes).
            RuntimeError: The response has started: the change could not be saved.
        """
        draft = self._draft
        self._check_change(key, value, flash=True)
        if value is None:
            self._take_flashes(key, delivered=False)
            return
        draft.flashes.append(Flash(draft.next_flash_id, key, value))
        draft.next_flash_id += 1

    def has(self, key: str) -> bool:
        """Return whether ``key`` is stored or flashed, without consuming a flash."""
        draft = self._draft
        return key in draft.data or any(flash.key == key for flash in draft.flashes)

    def delete_session(self) -> None:
        """Delete the session when the request ends and expire its cookie.

        The values stay readable for the rest of this request.

        Raises:
            RuntimeError: The response has started: the change could not be saved.
        """
        self._check_open("delete_session()")
        self._draft.delete = True

    def rotate_key(self) -> None:
        """Give the session a new id when the request ends; the old id stops working.

        Call it when a user logs in, so that an id planted before login is worthless.

        Raises:
            RuntimeError: The response has started: the change could not be saved.
        """
        self._check_open("rotate_key()")
        self._draft.rotate = True

    def set_expiry(self, seconds: int | None) -> None:
        """Give this session an idle timeout of its own ("remember me").

        The session then expires after ``seconds`` without use (instead of the config's
        ``expire_after_seconds``), and its cookie becomes persistent with that ``Max-Age``,
        sliding with use. The absolute timeout still applies. ``None`` returns to the config's.

        Raises:
            ValueError: ``seconds`` is not a positive whole number up to ten years.
            RuntimeError: The response has started: the change could not be saved.
        """
        from litestar_flash_sessions.config import check_lifetime

        check_lifetime(seconds, "set_expiry seconds")
        self._check_open("set_expiry()")
        draft = self._draft
        draft.lifetime = seconds
        draft.lifetime_set = True

    def to_dict(self) -> dict[str, Any]:
        """Return a shallow copy of the stored values (flashes excluded)."""
        return dict(self._draft.data)

    def _take_flashes(self, key: str, *, delivered: bool) -> Any:
        """Remove the pending flashes of ``key``; return the newest value, or ``_MISSING``."""
        draft = self._draft
        value = _MISSING
        kept = []
        for flash in draft.flashes:
            if flash.key != key:
                kept.append(flash)
                continue
            value = flash.value
            if flash.id < draft.own_from:  # loaded from the store, not this request's own
                draft.consumed[flash.id] = delivered
        if value is not _MISSING:
            draft.flashes[:] = kept
        return value

    def _check_open(self, change: str) -> None:
        if self._draft.committed:
            raise RuntimeError(
                f"session {change} after the response started (in a streamed body or a background "
                "task?): the session was already saved, so this change would be lost"
            )

    def _check_change(self, key: str, value: Any, *, flash: bool) -> None:
        """Check that ``value`` can be stored (or flashed) under ``key`` now, and grow the size estimate."""
        if not isinstance(key, str):
            raise TypeError(f"session keys must be strings, got {key!r}")
        self._check_open(f"change of key {key!r}")
        try:
            size = len(_encode(value))
        except (TypeError, msgspec.EncodeError) as exc:
            raise TypeError(f"session value for key {key!r} cannot be encoded by msgspec: {exc}") from exc
        draft = self._draft
        if value is None:
            return  # deleting never grows the session
        estimate = draft.size + len(key) + size + _ENTRY_OVERHEAD
        if estimate > draft.max_size:
            # The estimate is an upper bound: only near the limit is the session encoded exactly.
            trial = draft.content(0.0)
            if flash:
                trial.flashes = [*trial.flashes, Flash(draft.next_flash_id, key, value)]
            else:
                trial.data = {**trial.data, key: value}
            exact = len(_encode(trial))
            if exact > draft.max_size:
                raise SessionTooLargeError(
                    f"setting session key {key!r} would make the session about {exact} bytes, over its "
                    f"limit of {draft.max_size} (SessionConfig.max_size_bytes or the store's): store less"
                )
            estimate = exact
        draft.size = estimate


Session: TypeAlias = NamedDependency[SkipValidation[FlashSession]]
"""Annotate a handler parameter ``session: Session`` to receive the request's session.

It is :class:`FlashSession` marked for Litestar's name-based injection, so Litestar (2.23 and
later) injects it without a deprecation warning, and marked ``SkipValidation``: the plugin made
the object, so Litestar passes it through instead of checking its type on every request. Use
:class:`FlashSession` itself where you need the class, for ``isinstance`` or a helper's signature.
"""
