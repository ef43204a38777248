"""Reading one cookie from a request and rendering ``Set-Cookie`` headers, cheaply.

Only the session's own cookie is looked for: the other cookies of the request are not parsed.
The attributes are rendered once per configuration and reused for every response.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from litestar.types import Scope

    from litestar_flash_sessions.config import SessionConfig

__all__ = ("COOKIE_NAME", "MAX_SET_COOKIE_BYTES", "CookieJar", "CookieTooLargeError")

COOKIE_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
"""An RFC 6265 cookie name (an HTTP token)."""

MAX_SET_COOKIE_BYTES = 4096
"""The largest ``Set-Cookie`` header (name, value and attributes) that browsers keep."""

SET_COOKIE = b"set-cookie"


class CookieTooLargeError(ValueError):
    """A ``Set-Cookie`` header would exceed :data:`MAX_SET_COOKIE_BYTES`, so browsers would drop it."""


class CookieJar:
    """Read one cookie from requests, and render its ``Set-Cookie`` headers with the attributes of
    one configuration.

    Args:
        config: The cookie attributes.
        name: The cookie's name.
    """

    __slots__ = ("_expired", "_name", "_prefix", "_with_attributes")

    def __init__(self, config: SessionConfig, name: str) -> None:
        attributes = f"; Path={config.cookie_path}"
        if config.cookie_domain:
            attributes += f"; Domain={config.cookie_domain}"
        if config.cookie_max_age:
            attributes += f"; Max-Age={config.cookie_max_age}"
        if config.cookie_httponly:
            attributes += "; HttpOnly"
        attributes += f"; SameSite={config.cookie_samesite.capitalize()}"
        expired = f"{name}=; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Max-Age=0; Path={config.cookie_path}"
        if config.cookie_domain:
            expired += f"; Domain={config.cookie_domain}"
        # Indexed by whether the request came over https, which ``cookie_secure=None`` follows.
        secure_suffixes = tuple(
            "; Secure" if (https if config.cookie_secure is None else config.cookie_secure) else ""
            for https in (False, True)
        )
        self._name = name
        self._prefix = name.encode("ascii") + b"="
        self._with_attributes = tuple(attributes + suffix for suffix in secure_suffixes)
        self._expired = tuple((expired + suffix).encode("latin-1") for suffix in secure_suffixes)

    @property
    def name(self) -> str:
        """The cookie's name."""
        return self._name

    def read(self, scope: Scope) -> str | None:
        """Return the value of the request's first cookie of this name, or ``None``."""
        prefix = self._prefix
        for header, value in scope["headers"]:
            if header == b"cookie":
                for pair in value.split(b";"):
                    pair = pair.strip()  # noqa: PLW2901 (the stripped pair is the pair)
                    if pair.startswith(prefix):
                        return pair[len(prefix) :].decode("latin-1")
        return None

    def render(self, value: str, scope: Scope) -> tuple[bytes, bytes]:
        """Return the ``Set-Cookie`` header that sets the cookie to ``value``.

        Raises:
            CookieTooLargeError: The header would be over 4096 bytes.
        """
        attributes = self._with_attributes[scope.get("scheme") == "https"]
        header = f"{self._name}={value}{attributes}".encode("latin-1")
        if len(header) > MAX_SET_COOKIE_BYTES:
            raise CookieTooLargeError(
                f"the {self._name!r} Set-Cookie header would be {len(header)} bytes, over the "
                f"{MAX_SET_COOKIE_BYTES}-byte limit of browsers: store less in the session, "
                "or use a server-side store"
            )
        return SET_COOKIE, header

    def render_expired(self, scope: Scope) -> tuple[bytes, bytes]:
        """Return the ``Set-Cookie`` header that makes the browser drop the cookie."""
        return SET_COOKIE, self._expired[scope.get("scheme") == "https"]
