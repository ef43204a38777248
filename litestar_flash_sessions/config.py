"""Configuration of the session plugin."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

from litestar_flash_sessions.backend import SessionBackend
from litestar_flash_sessions.cookies import COOKIE_NAME
from litestar_flash_sessions.stores.memory import MemoryStore

__all__ = ("SessionConfig",)

DEFAULT_COOKIE_NAME = "session"

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
    expire_after_seconds: int | None = None
    """Sliding idle timeout: a session not used for this long expires. ``None`` or ``0``: never."""
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
    cleanup_interval_seconds: float | None = 300.0
    """How often the plugin deletes expired records from a store that does not expire them by
    itself (SQL). ``None`` switches it off (then call ``store.delete_expired()`` yourself)."""

    def __post_init__(self) -> None:
        if not isinstance(self.store, SessionBackend):
            raise ValueError(f"store must be a session store (a SessionBackend), got {self.store!r}")
        if not COOKIE_NAME.fullmatch(self.cookie_name):
            raise ValueError(f"cookie_name {self.cookie_name!r} is not a valid cookie name (an HTTP token)")
        own = self.store.cookie_name
        if own is not None and self.cookie_name not in (own, DEFAULT_COOKIE_NAME):
            raise ValueError(
                f"cookie_name {self.cookie_name!r} would be ignored: {type(self.store).__name__} names its "
                f"cookie {own!r}; set the name on the store instead"
            )
        if self.expire_after_seconds is not None and self.expire_after_seconds < 0:
            raise ValueError("expire_after_seconds must be a positive number of seconds, or None for never")
        if self.cookie_max_age is not None and self.cookie_max_age <= 0:
            raise ValueError("cookie_max_age must be a positive number of seconds, or None for a browser session")
        if not self.cookie_path.startswith("/") or not _ATTRIBUTE_VALUE.fullmatch(self.cookie_path):
            raise ValueError(f"cookie_path {self.cookie_path!r} must start with '/' and hold no ';' or space")
        if self.cookie_domain is not None and not _ATTRIBUTE_VALUE.fullmatch(self.cookie_domain):
            raise ValueError(f"cookie_domain {self.cookie_domain!r} must hold no ';' or space")
        if self.cookie_samesite not in ("lax", "strict", "none"):
            raise ValueError(f"cookie_samesite must be 'lax', 'strict' or 'none', not {self.cookie_samesite!r}")
        if self.cleanup_interval_seconds is not None and self.cleanup_interval_seconds <= 0:
            raise ValueError("cleanup_interval_seconds must be a positive number of seconds, or None for off")
        if self.cookie_samesite == "none" and self.cookie_secure is False:
            raise ValueError("cookie_samesite='none' needs a secure cookie: browsers reject it otherwise")

    @property
    def session_cookie_name(self) -> str:
        """The name the session cookie is sent under: the store's own, else :attr:`cookie_name`."""
        return self.store.cookie_name or self.cookie_name

    @property
    def ttl(self) -> int | None:
        """The idle timeout in seconds, ``None`` when sessions never expire."""
        return self.expire_after_seconds or None
