"""Reading one cookie from a request and rendering ``Set-Cookie`` headers, cheaply.

Only the session's own cookie is looked for: the other cookies of the request are not parsed
into anything. The attributes are rendered once per configuration and reused for every response.

A value too long for one cookie can be split across up to ``max_cookies`` cookies (the cookie
store's sealed sessions; server-side stores keep one cookie, ``max_cookies=1``). The chunk
naming scheme, for a cookie named ``NAME`` split into ``n`` chunks (2 <= n <= 20):

* the first chunk keeps the base name and carries the chunk count: ``NAME=<n>.<piece 0>``;
* chunk ``i`` (1 <= i < n) is ``NAME.<i>=<piece i>`` (``NAME.1``, ``NAME.2``, ...);
* a value that fits one cookie is sent as it always was: ``NAME=<value>``, no count (so
  cookies set before chunking existed still read, and a one-cookie value costs nothing more).

The value is the pieces joined in number order. A request whose set of chunks is not exactly
``NAME`` and ``NAME.1`` ... ``NAME.<n-1>``, each once (a gap, a duplicate, a chunk beyond the
count, chunks without the first one, a count over ``max_cookies``) has no cookie; only several
whole values of ``NAME`` and no chunk (a stale cookie of an older ``Path`` or ``Domain``, and the
current one) are each a value, tried in turn (:meth:`CookieJar.others`). Because the
pieces are parts of one authenticated token, pieces swapped between names or taken from two
different tokens fail to open in the backend and give a fresh session too.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from litestar.types import Scope

    from litestar_flash_sessions.config import SessionConfig

__all__ = (
    "COOKIE_NAME",
    "MAX_COOKIES",
    "MAX_OTHER_COOKIES",
    "MAX_SET_COOKIE_BYTES",
    "CookieJar",
    "CookieTooLargeError",
    "check_max_cookies",
)

COOKIE_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
"""An RFC 6265 cookie name (an HTTP token)."""

MAX_SET_COOKIE_BYTES = 4096
"""The largest ``Set-Cookie`` header (name, value and attributes) that browsers keep."""

MAX_COOKIES = 20
"""The most cookies one value may be split across: browsers keep at least 50 cookies per
domain (RFC 6265 section 6.1), and the session must leave room for the application's own."""

MAX_OTHER_COOKIES = 2
"""The most further cookies of the session's name a load tries when the first opens nothing:
each try is a store read, and a browser holds at most a few stale ones."""
SET_COOKIE = b"set-cookie"
_COUNT_SEPARATOR = "."
"""Ends the chunk count at the start of a chunked first cookie: not in the URL-safe base64 of
sealed tokens, so the first cookie of a one-cookie value never looks chunked."""
_COUNT_BYTES = len(str(MAX_COOKIES)) + len(_COUNT_SEPARATOR)
"""Room kept in the first chunk for the count, whatever it turns out to be."""
_LONGEST_MAX_AGE = 10**10 - 1
"""The largest per-response ``Max-Age`` :meth:`CookieJar.render` takes (ten digits; the config
allows ten years, nine): :meth:`CookieJar.max_value_bytes` allows for one this long."""
_COUNTS = {str(count).encode("ascii"): count for count in range(2, MAX_COOKIES + 1)}
"""The chunk counts a first cookie may carry, as they are written (no sign, no leading zero)."""


class CookieTooLargeError(ValueError):
    """A value would need ``Set-Cookie`` headers over :data:`MAX_SET_COOKIE_BYTES`, or more
    cookies than the jar may use, so browsers would drop it.
    """


def check_max_cookies(max_cookies: object) -> int:
    """Return ``max_cookies`` if it is a whole number from 1 to :data:`MAX_COOKIES`.

    Raises:
        ValueError: It is not an ``int`` (or is a ``bool``), or is out of that range.
    """
    if not isinstance(max_cookies, int) or isinstance(max_cookies, bool) or not 1 <= max_cookies <= MAX_COOKIES:
        raise ValueError(f"max_cookies must be a whole number from 1 to {MAX_COOKIES}, got {max_cookies!r}")
    return max_cookies


class CookieJar:
    """Read one cookie from requests, and render its ``Set-Cookie`` headers with the attributes of
    one configuration, splitting a long value across numbered cookies (see the module's
    docstring for the scheme).

    ``Secure`` is sent whenever ``config.always_secure`` holds (a ``__Host-``/``__Secure-``
    name, ``SameSite=None`` or ``cookie_secure=True``), over plain HTTP too; otherwise
    ``cookie_secure=None`` sends it exactly on HTTPS and ``False`` never.

    Args:
        config: The cookie attributes.
        name: The cookie's name.
        max_cookies: The most cookies a value may be split across, 1 to :data:`MAX_COOKIES`.
            ``None``: the store's ``max_cookies`` (the cookie store's), else 1.

    Raises:
        ValueError: ``max_cookies`` (given or the store's) is out of range.
    """

    __slots__ = (
        "_chunk_prefix",
        "_expired",
        "_head",
        "_indexes",
        "_max_cookies",
        "_name",
        "_prefix",
        "_tails",
        "_with_attributes",
    )

    def __init__(self, config: SessionConfig, name: str, max_cookies: int | None = None) -> None:
        # The store decides by default: the plugin builds the jar from the config alone, and only
        # the store knows whether its values are sealed sessions that may be split.
        self._max_cookies = check_max_cookies(
            getattr(config.store, "max_cookies", 1) if max_cookies is None else max_cookies
        )
        # Attributes in three parts, so that a per-response Max-Age slots in between without
        # rendering the rest again: Path and Domain; Max-Age; HttpOnly, SameSite and Secure.
        head = f"; Path={config.cookie_path}"
        if config.cookie_domain:
            head += f"; Domain={config.cookie_domain}"
        max_age = f"; Max-Age={config.cookie_max_age}" if config.cookie_max_age else ""
        tail = "; HttpOnly" if config.cookie_httponly else ""
        tail += f"; SameSite={config.cookie_samesite.capitalize()}"
        if config.cookie_partitioned:
            tail += "; Partitioned"
        # Indexed by whether the request came over https, which ``cookie_secure=None`` follows;
        # browsers reject a prefixed or SameSite=None cookie without Secure, even over http (and
        # a deletion of one too), so those are Secure on both.
        secure_suffixes = tuple(
            "; Secure"
            if config.always_secure or (https if config.cookie_secure is None else config.cookie_secure)
            else ""
            for https in (False, True)
        )
        expired = f"=; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Max-Age=0; Path={config.cookie_path}"
        if config.cookie_domain:
            expired += f"; Domain={config.cookie_domain}"
        chunk_names = [name, *(f"{name}.{index}" for index in range(1, MAX_COOKIES))]
        self._name = name
        self._prefix = name.encode("ascii") + b"="
        self._chunk_prefix = name.encode("ascii") + b"."  # what the name of every chunk but the first starts with
        self._head = head
        self._tails = tuple(tail + suffix for suffix in secure_suffixes)
        self._with_attributes = tuple(head + max_age + tail for tail in self._tails)
        # Every chunk name up to MAX_COOKIES, whatever this jar's max_cookies: chunks left by a
        # configuration that allowed more are recognised (as extra) and expired.
        self._indexes = {chunk.encode("ascii"): index for index, chunk in enumerate(chunk_names)}
        # A deletion carries the cookie's own flags: browsers refuse a SameSite=None cookie's
        # deletion without them from a cross-site response, and the session would stay.
        self._expired = tuple(
            tuple((chunk + expired + tail).encode("latin-1") for chunk in chunk_names) for tail in self._tails
        )

    @property
    def name(self) -> str:
        """The cookie's name (the first chunk's)."""
        return self._name

    @property
    def max_cookies(self) -> int:
        """The most cookies a value may be split across."""
        return self._max_cookies

    def max_value_bytes(self) -> int:
        """Return the length of the longest value :meth:`render` can always set for this
        configuration: over HTTP or HTTPS, with the config's or any per-response ``Max-Age``,
        across :attr:`max_cookies` cookies.
        """
        longest_attributes = (
            len(self._head) + len(f"; Max-Age={_LONGEST_MAX_AGE}") + max(len(tail) for tail in self._tails)
        )
        if self._max_cookies == 1:
            return max(0, MAX_SET_COOKIE_BYTES - len(self._name) - 1 - longest_attributes)
        return sum(max(0, self._chunk_capacity(index, longest_attributes)) for index in range(self._max_cookies))

    def read(self, scope: Scope) -> str | None:
        """Return the request's value of this cookie, joined from its chunks, or ``None``.

        With one cookie (``max_cookies=1``) the first cookie of this name is the value. With
        chunks, a set that is not exactly the chunks the first one counts, each once, is ``None``.
        """
        if self._max_cookies == 1:
            values = self._values(scope, 1)
            return values[0] if values else None
        # The usual request: one cookie header, where the name occurs once, at the start of a pair
        # and with its "=" at once, and the value holds no chunk count: then that value is what
        # _read_chunks finds, and there is no chunk to join (every chunk's name holds the name).
        cookie = None
        for header, value in scope["headers"]:
            if header == b"cookie":
                if cookie is not None:
                    return self._read_chunks(scope)
                cookie = value
        if cookie is None:
            return None
        prefix = self._prefix
        start = cookie.find(prefix)
        if start >= 0 and cookie.count(prefix[:-1]) == 1 and (start == 0 or cookie[:start].rstrip()[-1:] == b";"):
            end = cookie.find(b";", start)
            first = cookie[start + len(prefix) : None if end < 0 else end].strip()
            if first[:1] == _QUOTE:  # checked here: the usual, unquoted value makes no call
                first = _unquoted(first)
            if b"." not in first:
                return first.decode("latin-1")
        return self._read_chunks(scope)

    def others(self, scope: Scope) -> list[str]:
        """Return the values of the cookies of this name after the first, at most
        ``MAX_OTHER_COOKIES`` of them: a browser sends a stale one of another ``Path`` or
        ``Domain`` (left by an older configuration) before the current one.

        With chunks, only a request that carries no chunk of the name has others: whole values,
        each of which stands on its own (a set of two first chunks is broken).
        """
        if self._max_cookies != 1:
            return self._whole_values(scope)[1:]
        return self._values(scope, 1 + MAX_OTHER_COOKIES)[1:]

    def _whole_values(self, scope: Scope) -> list[str]:
        """Return the first values of this name, as :meth:`_values`, when the request carries no
        chunk of it, without those that hold a chunk count; else none (a set to join, or broken).
        """
        chunk_prefix = self._chunk_prefix
        if any(header == b"cookie" and chunk_prefix in value for header, value in scope["headers"]):
            return []
        return [value for value in self._values(scope, 1 + MAX_OTHER_COOKIES) if _COUNT_SEPARATOR not in value]

    def _values(self, scope: Scope, most: int) -> list[str]:
        """Return the values of the first ``most`` cookies of this name, in the request's order."""
        prefix, found = self._prefix, []
        for header, value in scope["headers"]:
            if header == b"cookie":
                for pair in value.split(b";"):
                    pair = pair.strip()  # noqa: PLW2901 (the stripped pair is the pair)
                    if pair.startswith(prefix):
                        found.append(_unquoted(pair[len(prefix) :]).decode("latin-1"))
                        if len(found) == most:
                            return found
        return found

    def render(self, value: str, scope: Scope, max_age: int | None = None) -> list[tuple[bytes, bytes]]:
        """Return the ``Set-Cookie`` headers that set the cookie to ``value``: one, or one per
        chunk, then the expiry of any chunk the request carried that this value does not use.

        Args:
            value: The cookie's value (ASCII cookie octets; without ``.`` when it may be chunked).
            scope: The request's scope: its scheme and, with chunks, its cookies.
            max_age: ``Max-Age`` for this response in seconds, instead of the config's
                ``cookie_max_age``; ``None``: the config's.

        Raises:
            CookieTooLargeError: The value would need a header over 4096 bytes, or more than
                :attr:`max_cookies` cookies.
            ValueError: ``max_age`` is not a positive whole number of at most ten digits, or a
                value that may be chunked holds a ``.``.
        """
        https = scope.get("scheme") in _SECURE_SCHEMES
        if max_age is None:
            attributes = self._with_attributes[https]
        elif isinstance(max_age, int) and not isinstance(max_age, bool) and 0 < max_age <= _LONGEST_MAX_AGE:
            attributes = f"{self._head}; Max-Age={max_age}{self._tails[https]}"
        else:
            raise ValueError(f"max_age must be a positive whole number of seconds, got {max_age!r}")
        header = f"{self._name}={value}{attributes}"
        if self._max_cookies == 1:
            if len(header) > MAX_SET_COOKIE_BYTES:
                raise CookieTooLargeError(
                    f"the {self._name!r} Set-Cookie header would be {len(header)} bytes, over the "
                    f"{MAX_SET_COOKIE_BYTES}-byte limit of browsers: store less in the session, "
                    "or use a server-side store"
                )
            return [(SET_COOKIE, header.encode("latin-1"))]
        if _COUNT_SEPARATOR in value:
            raise ValueError("a value that may be split across cookies must not hold '.', which ends the chunk count")
        if len(header) <= MAX_SET_COOKIE_BYTES:
            headers = [(SET_COOKIE, header.encode("latin-1"))]
        else:
            headers = self._split(value, attributes)
        return headers + self._stale(scope, len(headers), https)

    def render_expired(self, scope: Scope) -> list[tuple[bytes, bytes]]:
        """Return the ``Set-Cookie`` headers that make the browser drop the cookie: the first
        one's, and every other chunk's the request carried.
        """
        https = scope.get("scheme") in _SECURE_SCHEMES
        headers = [(SET_COOKIE, self._expired[https][0])]
        if self._max_cookies > 1:
            headers += self._stale(scope, 1, https)
        return headers

    def _chunk_capacity(self, index: int, attributes_length: int) -> int:
        """Return how many characters of the value chunk ``index`` can carry."""
        # The first chunk has the base name and room for the count; the others ".<index>".
        overhead = len(self._name) + (_COUNT_BYTES if index == 0 else 1 + len(str(index)))
        return MAX_SET_COOKIE_BYTES - overhead - 1 - attributes_length  # 1: the "="

    def _split(self, value: str, attributes: str) -> list[tuple[bytes, bytes]]:
        """Return the ``Set-Cookie`` headers of ``value`` split into as few chunks as it takes.

        Raises:
            CookieTooLargeError: It takes more than :attr:`max_cookies` chunks.
        """
        pieces: list[str] = []
        start = 0
        while start < len(value) and len(pieces) < self._max_cookies:
            capacity = self._chunk_capacity(len(pieces), len(attributes))
            if capacity <= 0:  # attributes alone fill a header: no chunk can carry anything
                break
            pieces.append(value[start : start + capacity])
            start += capacity
        if start < len(value):
            raise CookieTooLargeError(
                f"the {self._name!r} cookie value is {len(value)} bytes: it does not fit "
                f"max_cookies={self._max_cookies} Set-Cookie headers of at most {MAX_SET_COOKIE_BYTES} bytes "
                "(the limit of browsers): store less in the session, or use a server-side store"
            )
        first = f"{self._name}={len(pieces)}{_COUNT_SEPARATOR}{pieces[0]}{attributes}"
        headers = [(SET_COOKIE, first.encode("latin-1"))]
        headers += (
            (SET_COOKIE, f"{self._name}.{index}={piece}{attributes}".encode("latin-1"))
            for index, piece in enumerate(pieces[1:], 1)
        )
        return headers

    def _chunks(self, scope: Scope) -> dict[int, bytes] | None:
        """Return the request's chunks of this cookie by index, or ``None`` when one comes twice."""
        indexes = self._indexes
        chunks: dict[int, bytes] = {}
        for header, value in scope["headers"]:
            if header == b"cookie":
                for pair in value.split(b";"):
                    name, _, content = pair.partition(b"=")
                    index = indexes.get(name.strip())
                    if index is not None:
                        if index in chunks:
                            return None
                        chunks[index] = _unquoted(content.strip())
        return chunks

    def _read_chunks(self, scope: Scope) -> str | None:
        """Return the request's value joined from its chunks, or ``None`` for a broken set."""
        chunks = self._chunks(scope)
        if chunks is None:  # a name twice: whole values (a stale one first) are read one by one
            whole = self._whole_values(scope)
            return whole[0] if whole else None
        first = chunks.get(0)
        if first is None:
            return None
        count_text, separator, piece = first.partition(b".")
        if not separator:  # a value that fitted one cookie
            return first.decode("latin-1") if len(chunks) == 1 else None
        count = _COUNTS.get(count_text)
        if count is None or count > self._max_cookies or len(chunks) != count or max(chunks) != count - 1:
            return None  # the indexes are distinct, so count of them ending at count - 1 are 0 ... count - 1
        return b"".join([piece, *(chunks[index] for index in range(1, count))]).decode("latin-1")

    def _stale(self, scope: Scope, used: int, https: bool) -> list[tuple[bytes, bytes]]:
        """Return the expiry of every chunk from ``used`` on that the request carried."""
        indexes = self._indexes
        carried: set[int] = set()
        chunk_prefix = self._chunk_prefix
        for header, value in scope["headers"]:
            if header == b"cookie" and chunk_prefix in value:  # no "NAME." anywhere: no chunk to expire
                for pair in value.split(b";"):
                    # Only the name is looked at: cut it off without copying the value.
                    equals = pair.find(b"=")
                    index = indexes.get((pair if equals < 0 else pair[:equals]).strip())
                    if index is not None and index >= used:
                        carried.add(index)
        if not carried:
            return []
        expired = self._expired[https]
        return [(SET_COOKIE, expired[index]) for index in sorted(carried)]


_QUOTE = b'"'
_SECURE_SCHEMES = ("https", "wss")
"""Schemes of a request over TLS (``wss``: a WebSocket's handshake, which sets cookies too)."""


def _unquoted(value: bytes) -> bytes:
    """Return a cookie's value without the double quotes RFC 6265 lets it come in (some clients
    and proxies add them); the values this jar sets have none.
    """
    if value[:1] == _QUOTE and value[-1:] == _QUOTE and len(value) >= 2:
        return value[1:-1]
    return value
