"""Configuration of the session plugin."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from litestar_flash_sessions.backend import SessionBackend
from litestar_flash_sessions.cookies import COOKIE_NAME
from litestar_flash_sessions.stores.base import SessionStore, is_positive_seconds
from litestar_flash_sessions.stores.memory import MemoryStore

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

    from litestar.connection import ASGIConnection

__all__ = ("MAX_LIFETIME_SECONDS", "SessionConfig")

DEFAULT_COOKIE_NAME = "session"
MAX_LIFETIME_SECONDS = 315_360_000
"""Ten years: the longest idle timeout, absolute timeout, ``Max-Age`` or ``set_expiry`` accepted."""
MAX_COOKIE_NAME_LENGTH = 256

_ATTRIBUTE_VALUE = re.compile(r"[\x21-\x3a\x3c-\x7e]+")
"""A cookie attribute value: printable ASCII without ``;``."""


@dataclass
class SessionConfig:
    """How sessions are stored and how their cookie is sent.

    Every field is checked when the config is created; a bad value raises ``ValueError``
    saying what to change.
    """

    store: SessionBackend = field(default_factory=MemoryStore)
    """Where sessions live: any server-side store, or a ``CookieStore``. The default,
    :class:`MemoryStore`, suits tests and one process."""
    cookie_name: str = DEFAULT_COOKIE_NAME
    """The session cookie's name. A ``CookieStore`` names its cookie itself (its ``cookie_name``):
    leave this as it is then, or give the same name; another one is a ``ValueError``."""
    expire_after_seconds: int | None = 1_209_600
    """Sliding idle timeout: a session not used for this long expires (14 days by default, as
    Django's). ``None`` or ``0``: never."""
    absolute_timeout_seconds: int | None = None
    """A session older than this since it was created is dead however active, on every store
    (rotation keeps the creation time). ``None``: no absolute timeout."""
    cookie_path: str = "/"
    """The cookie's ``Path``."""
    cookie_domain: str | None = None
    """The cookie's ``Domain``; ``None`` sends none (the cookie stays on the exact host)."""
    cookie_secure: bool | None = None
    """``Secure``: ``None`` sets it exactly when the request came over HTTPS."""
    cookie_httponly: bool = True
    """``HttpOnly``: keeps the cookie away from JavaScript."""
    cookie_samesite: Literal["lax", "strict", "none"] = "lax"
    """``SameSite``; ``"none"`` requires a secure cookie."""
    cookie_max_age: int | None = None
    """``Max-Age`` in seconds; ``None`` makes a browser-session cookie."""
    cookie_partitioned: bool = False
    """``Partitioned`` (CHIPS): the browser keeps the cookie apart for each top-level site, as an
    app embedded in other sites' frames needs once third-party cookies are blocked. Requires a
    secure cookie (it is always sent ``Secure``); usually with ``cookie_samesite="none"``."""
    max_size_bytes: int = 65_536
    """The largest encoded session: a ``set`` or ``flash`` that would make it larger raises
    :class:`~litestar_flash_sessions.SessionTooLargeError`."""
    encryption_secret: str | Sequence[str] | None = None
    """Seal every record with AES-256-GCM, bound to its key, before it reaches a server-side
    store: a secret of at least 32 characters and 128 bits of estimated entropy, or a list of
    them (the first seals, all open: rotation). Needs ``cryptography`` (the ``[cookie]`` extra)."""
    max_sessions_per_user: int | None = None
    """The most sessions one user may have bound at once: binding one more revokes the user's
    oldest. ``None``: no limit. Needs a server-side store."""
    device_info: Callable[[ASGIConnection[Any, Any, Any, Any]], Mapping[str, str]] | None = None
    """What to keep of the device when a session is bound (``session.bind_user``), shown in the
    user's list of sessions: called with the request, for example
    ``lambda request: {"user_agent": request.headers.get("user-agent", "")}``. ``None`` (the
    default) keeps nothing beyond the session's times."""
    cleanup_interval_seconds: float | None = 300.0
    """How often the plugin deletes expired records from a store that does not expire them by
    itself (SQL). ``None`` switches it off (then call ``store.delete_expired()`` yourself)."""

    def __post_init__(self) -> None:
        if not isinstance(self.store, SessionBackend):
            raise ValueError(f"store must be a session store (a SessionBackend), got {self.store!r}")
        self._check_types()
        if not COOKIE_NAME.fullmatch(self.cookie_name):
            raise ValueError(f"cookie_name {self.cookie_name!r} is not a valid cookie name (an HTTP token)")
        own = self.store.cookie_name
        if own is not None and self.cookie_name not in (own, DEFAULT_COOKIE_NAME):
            raise ValueError(
                f"cookie_name {self.cookie_name!r} would be ignored: {type(self.store).__name__} names its "
                f"cookie {own!r}; set the name on the store instead"
            )
        check_lifetime(self.expire_after_seconds, "expire_after_seconds", zero_means="never")
        check_lifetime(self.absolute_timeout_seconds, "absolute_timeout_seconds")
        check_lifetime(self.cookie_max_age, "cookie_max_age")
        if len(self.session_cookie_name) > MAX_COOKIE_NAME_LENGTH:
            raise ValueError(f"the cookie name is over {MAX_COOKIE_NAME_LENGTH} characters: browsers may drop it")
        if not isinstance(self.max_size_bytes, int) or self.max_size_bytes <= 0:
            raise ValueError("max_size_bytes must be a positive number of bytes")
        if not self.cookie_path.startswith("/") or not _ATTRIBUTE_VALUE.fullmatch(self.cookie_path):
            raise ValueError(f"cookie_path {self.cookie_path!r} must start with '/' and hold no ';' or space")
        if self.cookie_domain is not None and not _ATTRIBUTE_VALUE.fullmatch(self.cookie_domain):
            raise ValueError(f"cookie_domain {self.cookie_domain!r} must hold no ';' or space")
        if self.cookie_samesite not in ("lax", "strict", "none"):
            raise ValueError(f"cookie_samesite must be 'lax', 'strict' or 'none', not {self.cookie_samesite!r}")
        if self.cleanup_interval_seconds is not None and not is_positive_seconds(self.cleanup_interval_seconds):
            raise ValueError("cleanup_interval_seconds must be a positive number of seconds, or None for off")
        if self.cookie_samesite == "none" and self.cookie_secure is False:
            raise ValueError("cookie_samesite='none' needs a secure cookie: browsers reject it otherwise")
        if self.cookie_partitioned and self.cookie_secure is False:
            raise ValueError("cookie_partitioned=True needs a secure cookie: browsers reject it otherwise")
        self._check_prefix()
        self._check_users()
        self.record_sealer: Any = None
        """Seals records at rest (a ``crypto.Sealer``), when ``encryption_secret`` is set."""
        if self.encryption_secret is not None:
            from litestar_flash_sessions.crypto import Sealer

            self.record_sealer = Sealer(self.encryption_secret, b"record", owner="encryption_secret")

    def _check_types(self) -> None:
        """Refuse a value of the wrong type with a ``ValueError`` that names the field: a string
        where a flag is due is truthy (``cookie_secure="no"`` would be on), ``True`` is the number 1.
        """
        for name in ("cookie_name", "cookie_path"):
            if not isinstance(getattr(self, name), str):
                raise ValueError(f"{name} must be a string, not {getattr(self, name)!r}")
        if self.cookie_domain is not None and not isinstance(self.cookie_domain, str):
            raise ValueError(f"cookie_domain must be a string or None, not {self.cookie_domain!r}")
        for name in ("cookie_httponly", "cookie_partitioned"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be True or False, not {getattr(self, name)!r}")
        if self.cookie_secure is not None and not isinstance(self.cookie_secure, bool):
            raise ValueError(
                f"cookie_secure must be True, False or None (secure over HTTPS), not {self.cookie_secure!r}"
            )
        if isinstance(self.max_size_bytes, bool):
            raise ValueError("max_size_bytes must be a positive number of bytes, not a flag")

    def _check_users(self) -> None:
        if self.device_info is not None and not callable(self.device_info):
            raise ValueError("device_info must be a callable taking the request, or None")
        cap = self.max_sessions_per_user
        if cap is None:
            return
        if not isinstance(cap, int) or isinstance(cap, bool) or cap <= 0:
            raise ValueError("max_sessions_per_user must be a positive whole number, or None for no limit")
        if not isinstance(self.store, SessionStore):
            raise ValueError(
                f"max_sessions_per_user needs a server-side store: {type(self.store).__name__} keeps each "
                "session in its browser, where the server cannot revoke it"
            )

    def _check_prefix(self) -> None:
        """Enforce the rules browsers apply to ``__Host-`` and ``__Secure-`` cookie names."""
        name = self.session_cookie_name
        if not name.startswith(("__Host-", "__Secure-")):
            return
        prefix = name.split("-", 1)[0] + "-"
        if self.cookie_secure is False:
            raise ValueError(f"a {prefix} cookie must be Secure: leave cookie_secure as None or True")
        if prefix == "__Host-" and (self.cookie_domain is not None or self.cookie_path != "/"):
            raise ValueError("a __Host- cookie must have no cookie_domain and cookie_path='/'")

    @property
    def always_secure(self) -> bool:
        """Whether the cookie is sent ``Secure`` even on plain HTTP: a ``__Host-``/``__Secure-``
        name, ``SameSite=None``, ``Partitioned`` or ``cookie_secure=True`` require it.
        """
        return (
            bool(self.cookie_secure)
            or self.cookie_samesite == "none"
            or self.cookie_partitioned
            or (self.session_cookie_name.startswith(("__Host-", "__Secure-")))
        )

    @property
    def session_cookie_name(self) -> str:
        """The name the session cookie is sent under: the store's own, else :attr:`cookie_name`."""
        return self.store.cookie_name or self.cookie_name

    @property
    def ttl(self) -> int | None:
        """The idle timeout in seconds, ``None`` when sessions never expire."""
        return self.expire_after_seconds or None


def check_lifetime(seconds: object, name: str, *, zero_means: str | None = None) -> None:
    """Check a lifetime in seconds: a whole positive number up to ten years, or ``None``.

    Raises:
        ValueError: ``seconds`` is not a whole number, is negative (or zero, unless
            ``zero_means`` says what zero means), or is over :data:`MAX_LIFETIME_SECONDS`.
    """
    if seconds is None or (seconds == 0 and zero_means is not None):
        return
    if not isinstance(seconds, int) or isinstance(seconds, bool) or seconds <= 0:
        never = f", 0 or None for {zero_means}" if zero_means else ", or None"
        raise ValueError(f"{name} must be a positive whole number of seconds{never}")
    if seconds > MAX_LIFETIME_SECONDS:
        raise ValueError(f"{name} is over ten years ({MAX_LIFETIME_SECONDS} s): give a shorter lifetime")
