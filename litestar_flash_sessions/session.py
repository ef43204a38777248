"""The session object handlers receive."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, MutableMapping
from typing import TYPE_CHECKING, Any, Final, NamedTuple, TypeVar, overload

import msgspec
from litestar.di import NamedDependency
from litestar.params import SkipValidation

from litestar_flash_sessions.draft import DELETED, Draft, new_handle
from litestar_flash_sessions.record import Flash

if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import TypeAlias

__all__ = ("MESSAGES_KEY", "FlashMessage", "FlashSession", "Session", "SessionTooLargeError", "UnstorableValueError")

MESSAGES_KEY: Final = "_messages"
"""Where Litestar's ``flash(request, message, category)`` and ``get_flashes()`` keep their
messages in ``request.session``: here they are flashes of this key, race-proof like any other."""


class FlashMessage(NamedTuple):
    """A pending flash message: its key, its value and its category (``None`` if it has none)."""

    key: str
    value: Any
    category: str | None = None


T = TypeVar("T")
D = TypeVar("D")

_MISSING: Final = object()
_SCALARS: Final = frozenset({str, int, bool, bytes})
"""The types whose equal values encode alike (not float: -0.0 == 0.0)."""
_MAX_USER_ID: Final = 256
_encode = msgspec.msgpack.Encoder().encode
_ENTRY_OVERHEAD: Final = 16
"""Bytes a key-value pair or a flash may add to an encoded session beyond its key and value
(MessagePack headers, a flash's id and category): the size estimate is an upper bound."""


class UnstorableValueError(TypeError):
    """A value cannot be kept in a session: msgspec cannot encode it (an object, an integer wider
    than 64 bits...). The plugin answers ``400`` for one that reaches it uncaught: such values
    usually come from the request.
    """


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

    def _carry_on_in(self, other: FlashSession) -> None:
        """Become ``other``, a session just loaded: read and change its content under its id.

        For the middleware: a WebSocket that deleted its session goes on in the fresh one.
        """
        self._draft, self._id = other._draft, other._id

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
            RuntimeError: A flash would be consumed after the response started (unsaved, it
                would show again).
        """
        draft = self._draft
        if key in draft.data:
            value = draft.data[key]
        elif not draft.flashes:
            return default
        else:
            taken = self._take(lambda flash: flash.key == key, delivered=True)
            if not taken:
                return default
            value = taken[-1].value
        return value if type is None else msgspec.convert(value, type, strict=False)

    def set(self, key: str, value: Any) -> None:
        """Store ``value`` under ``key``; ``None`` deletes the key.

        Raises:
            TypeError: ``key`` is not a string, or msgspec cannot encode ``value``.
            SessionTooLargeError: The session would grow past its size limit (nothing changes).
            RuntimeError: The response has started: the change could not be saved.
        """
        draft = self._draft
        self._check_change(key, value, False)
        if value is None:
            if key in draft.data:
                del draft.data[key]
                draft.written[key] = DELETED
                draft.rewritten = True
        else:
            self._store(key, value)

    def flash(self, key: str, value: Any, *, category: str | None = None, now: bool = False) -> None:
        """Add a message under ``key``, readable once by :meth:`get` or :meth:`flashes`, in this or a
        later request. Messages append: several per key stay pending, in order.

        Args:
            key: The key.
            value: The message; ``None`` withdraws the pending messages of ``key``.
            category: A category (``"error"``, ``"info"``...) to list messages by.
            now: Show the message in this request only (as Rails' ``flash.now``): never stored.

        Raises:
            TypeError: ``key`` is not a string, msgspec cannot encode ``value``, or ``category``
                is neither a string nor ``None`` (``UnstorableValueError``: a 400 if uncaught).
            SessionTooLargeError: The session would grow past its size limit (nothing changes).
            RuntimeError: The response has started: the change could not be saved.
        """
        if category is not None and not isinstance(category, str):  # stored, it would not load again
            raise UnstorableValueError(f"a flash's category must be a string or None, got {type(category).__name__}")
        draft = self._draft
        if now:
            _check_encodable(key, value)
            draft.now_next -= 1
            draft.flashes.append(Flash(draft.now_next, key, value, category))
            return
        self._check_change(key, value, True, category)
        if value is None:
            self._take(lambda flash: flash.key == key, delivered=False)
            return
        draft.flashes.append(Flash(draft.next_flash_id, key, value, category))
        draft.next_flash_id += 1

    def flashes(self, key: str | None = None, *, category: str | None = None) -> list[FlashMessage]:
        """Return the pending messages (of ``key`` and ``category`` when given), in order, and
        consume them: no later request sees them.

        Raises:
            RuntimeError: A message would be consumed after the response started (unsaved, it
                would show again).
        """
        return [_message(flash) for flash in self._take(_matching(key, category), delivered=True)]

    def peek_flashes(self, key: str | None = None, *, category: str | None = None) -> list[FlashMessage]:
        """Return the pending messages (of ``key`` and ``category`` when given), in order, without
        consuming them.
        """
        matches = _matching(key, category)
        return [_message(flash) for flash in self._draft.flashes if matches(flash)]

    def keep(self, key: str | None = None) -> None:
        """Keep the messages this request consumed (of ``key`` when given) for one more request.

        Raises:
            RuntimeError: The response has started: the change could not be saved.
        """
        self._check_open("keep()")
        draft = self._draft
        kept = [flash for flash in draft.shown if key is None or flash.key == key]
        for flash in kept:
            draft.shown.remove(flash)
            if flash.id < 0:
                continue  # a message for this request only stays one
            if 0 <= flash.id < draft.own_from:
                del draft.consumed[flash.id]  # still in the store: simply not consumed any more
                draft.flashes.append(flash)
            else:
                draft.flashes.append(Flash(draft.next_flash_id, flash.key, flash.value, flash.category))
                draft.next_flash_id += 1

    def has(self, key: str) -> bool:
        """Return whether ``key`` is stored or flashed, without consuming a flash."""
        draft = self._draft
        return key in draft.data or any(flash.key == key for flash in draft.flashes)

    def delete_session(self) -> None:
        """Delete the session when the request ends and expire its cookie.

        The values stay readable for the rest of this request. What the request changes after
        this call goes into a fresh session, under a new id: a message flashed ("You have been
        logged out", as after Laravel's invalidate-then-flash), a value set or a user bound (as
        after Django's ``flush()``), a lifetime given. The session is unbound at once:
        :attr:`user_id` is ``None`` from here on.

        Raises:
            RuntimeError: The response has started, or a WebSocket's handshake: the browser
                could not learn of the change.
        """
        self._check_id_change("delete_session()")
        draft = self._draft
        draft.delete = True
        # From here on the draft's change log is the fresh session's: the old one ends whole.
        draft.delete_from = draft.next_flash_id
        draft.written = {}
        draft.user = draft.handle = draft.device = draft.lifetime = None
        draft.user_set = draft.lifetime_set = False

    def rotate_key(self) -> None:
        """Give the session a new id when the request ends; the old id stops working.

        Call it when a user logs in, so that an id planted before login is worthless. A session
        the request leaves empty (``clear()`` then ``rotate_key()``: a logout to anonymous) ends
        instead, as after :meth:`delete_session`: what is stored next gets a new id.

        Raises:
            RuntimeError: The response has started, or a WebSocket's handshake: the browser
                could not learn of the change.
        """
        self._check_id_change("rotate_key()")
        self._draft.rotate = True

    @property
    def user_id(self) -> str | None:
        """The user the session is bound to (:meth:`bind_user`), ``None`` if none."""
        return self._draft.user

    @property
    def handle(self) -> str | None:
        """The opaque handle that names this session in its user's list of sessions
        (:class:`~litestar_flash_sessions.users.UserSessionManager`), ``None`` until it is bound.

        It is random, never the id or anything an id can be derived from, and stays the same
        across rotations: show it to the user, pass it back to revoke the session.
        """
        return self._draft.handle

    def bind_user(self, user_id: str) -> None:
        """Bind the session to ``user_id`` when the request ends (at login), and rotate its key.

        The session then appears in the user's list of sessions and can be revoked from another
        device, an admin task or a script (:class:`~litestar_flash_sessions.users.UserSessionManager`).
        Binding a session already bound to the same user keeps its handle; binding it to another
        user moves it. What ``SessionConfig.device_info`` returns is kept with it.

        Raises:
            ValueError: ``user_id`` is not a non-empty string of at most 256 characters that
                UTF-8 can encode.
            RuntimeError: The response has started, or a WebSocket's handshake: the browser
                could not learn of the change.
        """
        check_user_id(user_id)
        self._check_id_change("bind_user()")
        draft = self._draft
        if draft.user != user_id or draft.handle is None:
            draft.handle = new_handle()
            draft.device = None
        draft.user = user_id
        draft.user_set = True
        draft.rotate = True

    def unbind_user(self) -> None:
        """Unbind the session from its user when the request ends, and rotate its key; the
        session itself (its values) stays. :meth:`delete_session` unbinds too.

        Raises:
            RuntimeError: The response has started, or a WebSocket's handshake: the browser
                could not learn of the change.
        """
        self._check_id_change("unbind_user()")
        draft = self._draft
        draft.user = draft.handle = draft.device = None
        draft.user_set = True
        draft.rotate = True

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

    def _take(self, matches: Callable[[Flash], bool], *, delivered: bool) -> list[Flash]:
        """Remove the pending flashes ``matches`` accepts and return them, in order."""
        draft = self._draft
        taken: list[Flash] = []
        kept: list[Flash] = []
        for flash in draft.flashes:
            (taken if matches(flash) else kept).append(flash)
        if taken:
            # Consuming a stored flash is a change: unsaved, it would show again. (A flash for
            # this request only, flash(now=True), is never stored: reading it changes nothing.)
            if draft.committed and any(flash.id >= 0 for flash in taken):
                self._check_open("read of a flash")
            draft.flashes[:] = kept
            for flash in taken:
                if 0 <= flash.id < draft.own_from:  # loaded from the store, not this request's own
                    draft.consumed[flash.id] = delivered
            if delivered:
                draft.shown.extend(taken)
        return taken

    # --- the mapping protocol (request.session, Litestar's own tools) ---------------------------

    def __getitem__(self, key: str) -> Any:
        """Return the value stored under ``key`` (flashes aside).

        Raises:
            KeyError: Nothing is stored under ``key``.
        """
        if key == MESSAGES_KEY:
            return [_litestar_message(message) for message in self.peek_flashes(MESSAGES_KEY)]
        return self._draft.data[key]

    def __setitem__(self, key: str, value: Any) -> None:
        """Store ``value`` under ``key`` (``None`` too, as a dict would); raises as :meth:`set`."""
        self._check_change(key, value, False)
        self._store(key, value)

    def __delitem__(self, key: str) -> None:
        """Delete ``key``.

        Raises:
            KeyError: Nothing is stored under ``key``.
        """
        if key not in self._draft.data:
            raise KeyError(key)
        self.set(key, None)

    def __contains__(self, key: object) -> bool:
        """Return whether a value is stored under ``key`` (flashes aside; see :meth:`has`)."""
        return key in self._draft.data

    def __iter__(self) -> Iterator[str]:
        """Iterate over the stored keys."""
        return iter(list(self._draft.data))

    def __len__(self) -> int:
        """Return how many values are stored."""
        return len(self._draft.data)

    def __bool__(self) -> bool:
        """Return whether the session holds a value or a pending flash."""
        return bool(self._draft.data or self._draft.flashes)

    def __eq__(self, other: object) -> bool:
        """Compare the stored values with a mapping's, as a dict does (``request.session != {}``)."""
        if isinstance(other, FlashSession):
            return self._draft.data == other._draft.data
        if isinstance(other, Mapping):
            return self._draft.data == dict(other)
        return NotImplemented

    # Mutable, as a dict: equal sessions may change, so none has a hash.
    __hash__ = None  # type: ignore[assignment]

    def keys(self) -> list[str]:
        """Return the stored keys."""
        return list(self._draft.data)

    def values(self) -> list[Any]:
        """Return the stored values."""
        return list(self._draft.data.values())

    def items(self) -> list[tuple[str, Any]]:
        """Return the stored ``(key, value)`` pairs."""
        return list(self._draft.data.items())

    def pop(self, key: str, default: Any = _MISSING) -> Any:
        """Remove ``key`` and return its value, else ``default``.

        ``pop("_messages", [])`` (Litestar's ``get_flashes``) consumes and returns the messages
        Litestar's ``flash()`` added, as ``{"message": ..., "category": ...}`` dicts.

        Raises:
            KeyError: Nothing is stored under ``key`` and no default was given.
        """
        if key == MESSAGES_KEY:
            return [_litestar_message(message) for message in self.flashes(MESSAGES_KEY)]
        if key in self._draft.data:
            value = self._draft.data[key]
            self.set(key, None)
            return value
        if default is _MISSING:
            raise KeyError(key)
        return default

    def setdefault(self, key: str, default: Any = None) -> Any:
        """Return the value of ``key``, storing ``default`` first if there is none.

        ``setdefault("_messages", [])`` (Litestar's ``flash()``) returns a list whose ``append``
        adds a flash message.
        """
        if key == MESSAGES_KEY:
            return _LitestarFlashes(self)
        if key not in self._draft.data:
            self[key] = default
        return self._draft.data[key]

    def update(self, other: Mapping[str, Any] | Iterable[tuple[str, Any]] = (), /, **values: Any) -> None:
        """Store every key and value of ``other`` and ``values``."""
        pairs = other.items() if isinstance(other, Mapping) else other
        for key, value in (*pairs, *values.items()):
            self[key] = value

    def clear(self) -> None:
        """Delete every stored value and pending flash (the session itself stays; see
        :meth:`delete_session` to end it).
        """
        for key in list(self._draft.data):
            self.set(key, None)
        self._take(lambda flash: True, delivered=False)

    def _store(self, key: str, value: Any) -> None:
        draft = self._draft
        data = draft.data
        if not draft.rewritten:
            # Only a string, a whole number or a flag equal to the one held, of the same type, is
            # the same value: a container may have been changed in place (and held is then the
            # changed object), and equal values of other types encode differently (0 and False).
            held = data.get(key, _MISSING)
            draft.rewritten = type(value) not in _SCALARS or type(held) is not type(value) or held != value
        data[key] = value
        draft.written[key] = value

    def _check_id_change(self, change: str) -> None:
        self._check_open(change)
        if self._draft.id_fixed:
            raise RuntimeError(
                f"session {change} after the WebSocket handshake: the browser could not learn of it "
                "(no cookie can reach it any more); end, rotate or bind the session over HTTP"
            )

    def _check_open(self, change: str) -> None:
        draft = self._draft
        if draft.committed and draft.id_fixed:
            raise RuntimeError(
                f"session {change} after the WebSocket handshake, where no stored session could "
                "take it (the cookie store's, one not stored at the handshake, or one ended since): "
                "make the change before accept(), or over HTTP"
            )
        if draft.committed:
            raise RuntimeError(
                f"session {change} after the response started (in a streamed body or a background "
                "task?): the session was already saved, so this change would be lost"
            )

    def _check_change(self, key: str, value: Any, flash: bool, category: str | None = None) -> None:
        """Check that ``value`` can be stored (or flashed) under ``key`` now, and grow the size estimate.

        Raises:
            TypeError: ``key`` is not a string, or msgspec cannot encode ``value``.
            SessionTooLargeError: The session would grow past its size limit.
            RuntimeError: The response has started.
        """
        size = _check_encodable(key, value)
        draft = self._draft
        if draft.committed:  # checked here first: the message is only built for the error
            self._check_open(f"change of key {key!r}")
        if value is None:
            return  # deleting never grows the session
        # The key's bytes, not its characters: a non-ASCII key encodes longer than it reads.
        estimate = draft.size + (len(key) if key.isascii() else len(key.encode())) + size + _ENTRY_OVERHEAD
        if category is not None:
            estimate += len(_encode(category))
        if estimate > draft.max_size:
            estimate = self._exact_size(key, value, flash=flash, category=category)
        draft.size = estimate

    def _exact_size(self, key: str, value: Any, *, flash: bool, category: str | None) -> int:
        """Return the exact size of the session with ``value`` stored (or flashed) under ``key``,
        when the estimate is over the limit (it is an upper bound: only near the limit is the
        session encoded exactly).

        Raises:
            SessionTooLargeError: It is over the limit.
            UnstorableValueError: The value is nested too deeply to encode within the session.
        """
        draft = self._draft
        trial = draft.content(0.0)
        if flash:
            trial.flashes = [*trial.flashes, Flash(draft.next_flash_id, key, value, category)]
        else:
            trial.data = {**trial.data, key: value}
        try:
            exact = len(_encode(trial))
        except RecursionError as exc:  # the value, two levels deeper in the session, than set() checked
            raise UnstorableValueError(f"session value for key {key!r} is nested too deeply to be stored") from exc
        if exact > draft.max_size:
            raise SessionTooLargeError(
                f"setting session key {key!r} would make the session about {exact} bytes, over its "
                f"limit of {draft.max_size} (SessionConfig.max_size_bytes or the store's): store less"
            )
        return exact


def check_user_id(user_id: object) -> None:
    """Check that ``user_id`` can name a user: a non-empty string of at most 256 characters
    that UTF-8 can encode (not a lone surrogate: it could be neither stored nor hashed).

    Raises:
        ValueError: It cannot.
    """
    if not isinstance(user_id, str) or not 0 < len(user_id) <= _MAX_USER_ID:
        raise ValueError(f"user_id must be a non-empty string of at most {_MAX_USER_ID} characters")
    try:
        user_id.encode()
    except UnicodeEncodeError:
        raise ValueError("user_id must be text that UTF-8 can encode (it holds a lone surrogate)") from None


def _check_encodable(key: str, value: Any) -> int:
    """Return the size of ``value`` encoded.

    Raises:
        TypeError: ``key`` is not a string, or msgspec cannot encode ``value``.
    """
    if not isinstance(key, str):
        raise TypeError(f"session keys must be strings, got {key!r}")
    try:
        return len(_encode(value))
    except (TypeError, OverflowError, msgspec.EncodeError, RecursionError) as exc:
        raise UnstorableValueError(f"session value for key {key!r} cannot be encoded by msgspec: {exc}") from exc


def _matching(key: str | None, category: str | None) -> Callable[[Flash], bool]:
    return lambda flash: (key is None or flash.key == key) and (category is None or flash.category == category)


def _message(flash: Flash) -> FlashMessage:
    return FlashMessage(flash.key, flash.value, flash.category)


def _litestar_message(message: FlashMessage) -> dict[str, Any]:
    return {"message": message.value, "category": message.category}


class _LitestarFlashes(list[dict[str, Any]]):
    """What ``session.setdefault("_messages", [])`` returns: appending flashes a message."""

    def __init__(self, session: FlashSession) -> None:
        super().__init__(session["_messages"])
        self._session = session

    def extend(self, items: Iterable[Any]) -> None:
        """Flash every item, in order."""
        for item in items:
            self.append(item)

    def append(self, item: Any) -> None:
        """Flash ``item`` (Litestar's ``{"message": ..., "category": ...}``, or a bare message)."""
        super().append(item)
        if isinstance(item, Mapping):
            self._session.flash(MESSAGES_KEY, item.get("message"), category=item.get("category"))
        else:
            self._session.flash(MESSAGES_KEY, item)


# A mapping to code that checks (Litestar's own tools, ``isinstance(request.session, Mapping)``),
# without Mapping's mixins: its methods are the session's own, which know about flashes.
MutableMapping.register(FlashSession)


Session: TypeAlias = NamedDependency[SkipValidation[FlashSession]]
"""Annotate a handler parameter ``session: Session`` to receive the request's session.

It is :class:`FlashSession` marked for Litestar's name-based injection, so Litestar (2.23 and
later) injects it without a deprecation warning, and marked ``SkipValidation``: the plugin made
the object, so Litestar passes it through instead of checking its type on every request. Use
:class:`FlashSession` itself where you need the class, for ``isinstance`` or a helper's signature.
"""
