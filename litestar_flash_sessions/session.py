"""The session object handlers receive, and how it is encoded for a store."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final, TypeVar, overload

import msgspec
from litestar.di import NamedDependency
from litestar.params import SkipValidation

if TYPE_CHECKING:
    from typing import TypeAlias

__all__ = ("FlashSession", "Session", "decode_record")

T = TypeVar("T")
D = TypeVar("D")

_DELETED: Final = object()
"""Marks a key the request deleted, in the list of changes to replay after a conflict."""

_encode = msgspec.msgpack.Encoder().encode

decode_record = msgspec.msgpack.Decoder(tuple[dict[str, Any], dict[str, Any]]).decode
"""Decode a stored record (a MessagePack array: the data, then the pending flashes, apart so
that they never mix) into its data and flash dicts.

Raises:
    msgspec.DecodeError: The record is corrupt.
"""


class FlashSession:
    """One client's session, loaded before the handler runs.

    Every method is synchronous and touches only memory; the middleware writes the changes
    back (once) when the response starts. Values are stored with msgspec's MessagePack
    encoding, so they come back as the types MessagePack knows (a tuple comes back as a list,
    a ``Struct`` as a dict): pass ``type=`` to :meth:`get` to convert them back.

    A mutable value changed in place is not noticed: call :meth:`set` again to store it.
    """

    __slots__ = (
        "_changes",
        "_consumed",
        "_data",
        "_deleted",
        "_flash",
        "_flashed",
        "_id",
        "_record",
        "_redelivers_flash",
        "_rotate",
    )

    def __init__(
        self,
        session_id: str | None = None,
        data: dict[str, Any] | None = None,
        flash: dict[str, Any] | None = None,
        record: bytes | None = None,
    ) -> None:
        """Create a session; the middleware does this, handlers receive it.

        Args:
            session_id: The id the session is stored under, ``None`` for a new session.
            data: The stored values.
            flash: The pending flashed values.
            record: The stored bytes these values were decoded from (the compare-and-set base).
        """
        self._id = session_id
        self._data: dict[str, Any] = {} if data is None else data
        self._flash: dict[str, Any] = {} if flash is None else flash
        self._record = record
        self._changes: dict[str, Any] = {}
        self._flashed: dict[str, Any] = {}
        self._consumed: dict[str, bool] = {}  # flash key -> whether this request delivered it
        self._deleted = False
        self._rotate = False
        self._redelivers_flash = False

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
        flashed one of the same name, which then stays pending.

        Args:
            key: The key.
            default: Returned when the key is neither stored nor flashed (never converted).
            type: Convert the value with :func:`msgspec.convert` to this type, for example a
                ``msgspec.Struct``, ``datetime`` or ``UUID``.

        Raises:
            msgspec.ValidationError: The value does not convert to ``type``.
        """
        if key in self._data:
            value = self._data[key]
        elif key in self._flash:
            value = self._flash.pop(key)
            if self._flashed.pop(key, _DELETED) is _DELETED:
                self._consumed[key] = True  # delivered a flash from the store
            else:
                self._consumed.setdefault(key, False)  # this request's own flash, read back
        else:
            return default
        return value if type is None else msgspec.convert(value, type, strict=False)

    def set(self, key: str, value: Any) -> None:
        """Store ``value`` under ``key``; ``None`` deletes the key.

        Raises:
            TypeError: ``key`` is not a string, or msgspec cannot encode ``value``.
        """
        _check(key, value)
        if value is None:
            if key not in self._data:
                return
            del self._data[key]
            self._changes[key] = _DELETED
        else:
            self._data[key] = value
            self._changes[key] = value

    def flash(self, key: str, value: Any) -> None:
        """Store ``value`` until the first :meth:`get` of ``key``, in this or a later request.

        ``None`` withdraws a pending flash of ``key``.

        Raises:
            TypeError: ``key`` is not a string, or msgspec cannot encode ``value``.
        """
        _check(key, value)
        if value is None:
            if key in self._flash:
                del self._flash[key]
                self._flashed.pop(key, None)
                self._consumed.setdefault(key, False)
            return
        self._flash[key] = value
        self._flashed[key] = value

    def has(self, key: str) -> bool:
        """Return whether ``key`` is stored or flashed, without consuming a flash."""
        return key in self._data or key in self._flash

    def delete_session(self) -> None:
        """Delete the session when the request ends and expire its cookie.

        The values stay readable for the rest of this request.
        """
        self._deleted = True

    def rotate_key(self) -> None:
        """Give the session a new id when the request ends; the old id stops working.

        Call it when a user logs in, so that an id planted before login is worthless.
        """
        self._rotate = True

    def to_dict(self) -> dict[str, Any]:
        """Return a shallow copy of the stored values (flashes excluded)."""
        return dict(self._data)

    @property
    def is_deleted(self) -> bool:
        """Whether :meth:`delete_session` was called."""
        return self._deleted

    @property
    def rotate_requested(self) -> bool:
        """Whether :meth:`rotate_key` was called."""
        return self._rotate

    @property
    def is_modified(self) -> bool:
        """Whether this request changed the session's stored data or flashes."""
        return bool(self._changes or self._flashed or self._consumed)

    @property
    def is_empty(self) -> bool:
        """Whether the session holds no value and no pending flash."""
        return not self._data and not self._flash

    @property
    def redelivers_flash(self) -> bool:
        """Whether a flash this request read was also delivered by a concurrent request."""
        return self._redelivers_flash

    @property
    def loaded_record(self) -> bytes | None:
        """The stored bytes this session was loaded from, ``None`` for a new session."""
        return self._record

    def encode(self) -> bytes:
        """Encode the values and pending flashes as a record for a store."""
        return _encode((self._data, self._flash))

    def rebase(self, record: bytes) -> None:
        """Replay this request's changes on ``record``, which another request stored meanwhile.

        Keys this request set or deleted take this request's value; the others keep the newer
        value. Flashes this request consumed are gone, flashes it added are added.

        If a flash this request read had meanwhile been consumed by the other request,
        :attr:`redelivers_flash` becomes true: this response must not show it a second time.

        Raises:
            msgspec.DecodeError: ``record`` is corrupt.
        """
        data, flash = decode_record(record)
        for key, value in self._changes.items():
            if value is _DELETED:
                data.pop(key, None)
            else:
                data[key] = value
        for key, delivered in self._consumed.items():
            if flash.pop(key, _DELETED) is _DELETED and delivered:
                self._redelivers_flash = True
        flash.update(self._flashed)
        self._data, self._flash, self._record = data, flash, record


def _check(key: str, value: Any) -> None:
    if not isinstance(key, str):
        raise TypeError(f"session keys must be strings, got {key!r}")
    try:
        _encode(value)
    except (TypeError, msgspec.EncodeError) as exc:
        raise TypeError(f"session value for key {key!r} cannot be encoded by msgspec: {exc}") from exc


Session: TypeAlias = NamedDependency[SkipValidation[FlashSession]]
"""Annotate a handler parameter ``session: Session`` to receive the request's session.

It is :class:`FlashSession` marked for Litestar's name-based injection, so Litestar (2.23 and
later) injects it without a deprecation warning, and marked ``SkipValidation``: the plugin made
the object, so Litestar passes it through instead of checking its type on every request. Use
:class:`FlashSession` itself where you need the class, for ``isinstance`` or a helper's signature.
"""
