"""A store in Redis reached over HTTP through Webdis, with Redis's own key expiry.

Each session is one Redis string key, ``prefix + session_id``, as with
:class:`~litestar_flash_sessions.stores.redis.RedisStore`. Every operation is one HTTP request
running one small Lua script: ``/EVAL/<script>/1/<key>/<tag>/<arguments>.raw``; concurrent reads
go in one request too (``/EVAL/<script>/<n>/<key>.../<tag>/<ttls>.raw``).

* read: ``GET key``, or ``GETEX key EX n`` to slide the expiry;
* write: a compare-and-set, sent with ``PUT`` and the record as the request body, which Webdis
  appends as the script's last argument;
* delete: ``DEL key``.

Why scripts even for a plain read: Webdis 0.1.9 can hand the reply of a request whose client
disconnected (a timed-out request, for example) to the next connection it accepts, that is to
another request, possibly another user's. So each script returns a random tag sent with its own
request next to the result, and the store accepts only a reply that carries its tag.

Webdis's JSON replies are not binary-safe (a NUL truncates, invalid UTF-8 turns into ``{}``), so
the store asks for ``.raw`` replies (Redis's own RESP framing) and sends records only in request
bodies. Every path argument is percent-encoded, ``.`` included, because Webdis reads ``/`` as an
argument separator and the last ``.`` of the path as the reply format.
"""

from __future__ import annotations

import re
import secrets
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import quote

import httpx

from litestar_flash_sessions.stores._batch import BatchedReads, Read
from litestar_flash_sessions.stores._lua import CAS_SCRIPT, WRITTEN, cas_arguments
from litestar_flash_sessions.stores.base import (
    SessionStore,
    StoreUnavailableError,
    guarded,
    validate_key_prefix,
    validate_timeout,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ("WebdisError", "WebdisStore")

# Every script gets KEYS[1] = the key and ARGV[1] = the request's tag, and returns one string:
# the tag, then its result. (Webdis re-encodes arrays in ``.raw`` replies and drops their nil
# items, so one binary-safe string is the only shape that comes back intact.) The write is the
# compare-and-set RedisStore runs too (``_lua.CAS_SCRIPT``), which follows the same rule.
_GET = """
local record = redis.call('GET', KEYS[1])
if record then return ARGV[1] .. '1' .. record end
return ARGV[1] .. '0'
"""
_GETEX = """
local record = redis.call('GETEX', KEYS[1], 'EX', ARGV[2])
if record then return ARGV[1] .. '1' .. record end
return ARGV[1] .. '0'
"""
_DEL = "return ARGV[1] .. redis.call('DEL', KEYS[1])"
_READ_MANY = """
local out = {ARGV[1]}
for i, key in ipairs(KEYS) do
    local record
    if ARGV[i + 1] == '0' then
        record = redis.call('GET', key)
    else
        record = redis.call('GETEX', key, 'EX', ARGV[i + 1])
    end
    if record then out[i + 1] = '1' .. #record .. ':' .. record else out[i + 1] = '0' end
end
return table.concat(out)
"""
"""A batch of reads: ``KEYS`` the keys, ``ARGV[i + 1]`` the TTL to give ``KEYS[i]`` (``0``: leave it).
Returns one string, the tag then each record in turn: ``0`` for none, else ``1<length>:<bytes>``."""

_UNAVAILABLE_STATUSES = frozenset({502, 503, 504})
"""Webdis answers 503 while it cannot reach Redis; a proxy in front may answer 502 or 504."""

_TRANSIENT_ERRORS: Final = re.compile(
    # The code opens the error reply; Redis before 7 wraps an error a script's redis.call() met
    # as "ERR Error running script (call to f_<sha>): @user_script:<line>: <CODE> ...".
    r"(?:ERR )?(?:Error running script \(call to \w+\): (?:@user_script:\d+: )?)?"
    r"(OOM|READONLY|MASTERDOWN|LOADING|BUSY|TRYAGAIN|CLUSTERDOWN|NOREPLICAS)\b"
)
"""Redis error replies that mean "not now" rather than "wrong request": out of memory under
``noeviction``, a read-only replica (after a failover), a replica cut off from its master, a
dataset still loading, a script running too long, a slot migrating, a cluster down, too few
replicas for ``min-replicas-to-write``. (The same codes as RedisStore's.)"""

_ARGUMENTS: Final = re.compile(r",? with args beginning with:.*", re.DOTALL)
"""Where Redis echoes a command's arguments (``ERR unknown command 'EVAL', with args beginning
with: ...``): the key and the record, which must not reach a log."""


class WebdisError(RuntimeError):
    """Webdis or Redis refused a request: a misconfiguration, not an outage.

    For example a Webdis ACL that disables ``EVAL``, or a Redis older than 6.2 (no ``GETEX``).
    """


class WebdisStore(BatchedReads, SessionStore):
    """Keep session records in Redis behind a Webdis HTTP server, with native TTLs.

    Who closes the client: a store made without ``client`` (by the constructor or by
    :meth:`from_url`) creates its own keep-alive ``httpx.AsyncClient`` (at :meth:`startup`, or
    at first use), owns it and closes it in :meth:`shutdown`. A client passed in stays the
    caller's: the store never closes it.

    Args:
        url: Webdis's base URL.
        prefix: Prepended to every session id to form the Redis key: letters, digits and
            ``_ - : .``, 1 to 100 characters.
        client: An ``httpx.AsyncClient`` to send requests with (the caller's, never closed by
            the store); ``None``: the store's own.
        timeout: Seconds the Webdis requests made for one app request may take together (any
            other one, on its own) before the store counts as unavailable; ``None`` waits as long
            as the client does. Also the timeout of the store's own client.

    Raises:
        ValueError: ``url`` is not an http(s) URL, or ``prefix`` holds other characters.
    """

    __slots__ = ("_client", "_client_options", "_owns_client", "_prefix", "_timeout", "_url")

    def __init__(
        self,
        url: str = "http://127.0.0.1:7379",
        prefix: str = "session_",
        *,
        client: httpx.AsyncClient | None = None,
        timeout: float | None = 5.0,
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"url {url!r} is not a Webdis URL: it must start with http:// or https://")
        self._url = url.rstrip("/")
        self._prefix = validate_key_prefix(prefix)
        self._client = client
        self._owns_client = client is None
        self._client_options: dict[str, Any] = {"timeout": timeout}
        self._timeout = validate_timeout(timeout)

    @classmethod
    def from_url(
        cls, url: str, *, prefix: str = "session_", timeout: float | None = 5.0, **client_options: Any
    ) -> WebdisStore:
        """Return a store on an HTTP client of its own, which it closes in :meth:`shutdown`.

        The same as the constructor without ``client``, besides ``client_options``.

        Args:
            url: Webdis's base URL.
            prefix: As for the constructor.
            timeout: As for the constructor.
            client_options: Keyword arguments for the store's ``httpx.AsyncClient`` (such as
                ``limits`` or ``verify``); ``timeout`` there overrides the client's timeout only.

        Raises:
            ValueError: ``url`` is not an http(s) URL, or ``prefix`` holds other characters.
        """
        store = cls(url, prefix, timeout=timeout)
        store._client_options.update(client_options)
        return store

    @property
    def prefix(self) -> str:
        """The prefix of every key this store writes."""
        return self._prefix

    @property
    def client(self) -> httpx.AsyncClient:
        """The HTTP client the store sends its requests with (its own one is opened on first use)."""
        if self._client is None:
            self._client = httpx.AsyncClient(**self._client_options)
        return self._client

    def key(self, session_id: str) -> str:
        """Return the Redis key holding the session ``session_id``."""
        return self._prefix + session_id

    async def startup(self) -> None:
        """Open the store's own HTTP client, unless it was given one."""
        _ = self.client

    async def shutdown(self) -> None:
        """Close the store's own HTTP client; a client it was given stays open."""
        if self._owns_client and self._client is not None:
            client, self._client = self._client, None
            await client.aclose()

    _max_batch = 32
    """At most 32 keys a request, which keeps its URL under about 3 KB."""

    async def _read_one(self, read: Read) -> bytes | None:
        """One read alone: the ``GET`` or ``GETEX`` script on one key."""
        session_id, expires_in = read
        if expires_in is None:
            result = await self._eval(_GET, session_id)
        else:
            result = await self._eval(_GETEX, session_id, str(expires_in))
        return result[1:] if result[:1] == b"1" else None

    async def _read_many(self, reads: Sequence[Read]) -> list[bytes | None]:
        """Several reads in one HTTP request: :data:`_READ_MANY` over all the keys."""
        ttls = ["0" if expires_in is None else str(expires_in) for _, expires_in in reads]
        result = await self._eval_keys(_READ_MANY, [self.key(session_id) for session_id, _ in reads], *ttls)
        return _records(result, len(reads))

    async def set(self, session_id: str, record: bytes, expires_in: int | None, previous: bytes | None) -> bool:
        """Run the compare-and-set script: write only if the key still holds ``previous``."""
        # The record goes in the body: Webdis appends it as the script's last argument, ARGV[4].
        return await self._eval(CAS_SCRIPT, session_id, *cas_arguments(expires_in, previous), body=record) == WRITTEN

    async def delete(self, session_id: str) -> None:
        """Delete the key, if any."""
        await self._eval(_DEL, session_id)

    async def _eval(self, script: str, session_id: str, *args: str, body: bytes | None = None) -> bytes:
        """Run ``script`` on the session's key in one HTTP request and return its result.

        Args:
            script: One of the scripts above.
            session_id: Its key is the script's ``KEYS[1]``.
            args: ``ARGV[2]`` and on (``ARGV[1]`` is the request's tag).
            body: Sent with ``PUT``; Webdis appends it to the arguments, byte for byte.

        Returns:
            What the script returned after the tag.

        Raises:
            StoreUnavailableError: Webdis is unreachable, timed out, cannot reach Redis, or
                answered with a reply that is not this request's.
            WebdisError: Webdis or Redis refused the command.
        """
        return await self._eval_keys(script, [self.key(session_id)], *args, body=body)

    async def _eval_keys(self, script: str, keys: Sequence[str], *args: str, body: bytes | None = None) -> bytes:
        """Run ``script`` on ``keys`` (its ``KEYS``) in one HTTP request, as :meth:`_eval` does."""
        tag = secrets.token_hex(8).encode()
        path = "/".join(_encode(arg) for arg in ("EVAL", script, str(len(keys)), *keys, tag.decode(), *args))
        request = self.client.request("GET" if body is None else "PUT", f"{self._url}/{path}.raw", content=body)
        response = await guarded(request, self._timeout, "WebdisStore", (httpx.TransportError,))
        if response.status_code in _UNAVAILABLE_STATUSES:
            raise StoreUnavailableError(f"WebdisStore: Webdis answered {response.status_code} (is Redis down?)")
        if response.status_code != 200:
            # Only the status and the length: the body may be a reply meant for another request.
            raise WebdisError(f"Webdis answered {response.status_code} ({len(response.content)} bytes)")
        reply = _bulk_string(response.content)
        if reply is None or not reply.startswith(tag):
            await _drop_connection(response)
            # Never the reply itself: it may be another user's record.
            raise StoreUnavailableError(
                f"WebdisStore: Webdis answered with a reply that is not this request's ({len(response.content)} bytes)"
            )
        return reply[len(tag) :]


def _records(result: bytes, count: int) -> list[bytes | None]:
    """Decode what :data:`_READ_MANY` returned after the tag: ``count`` records.

    Raises:
        StoreUnavailableError: The result does not hold ``count`` well-formed records.
    """
    records: list[bytes | None] = []
    at = 0
    while at < len(result):
        if result[at : at + 1] == b"0":
            records.append(None)
            at += 1
            continue
        colon = result.find(b":", at)
        size = result[at + 1 : colon]
        if colon < 0 or result[at : at + 1] != b"1" or not size.isdigit():
            break
        at = colon + 1 + int(size)
        records.append(result[colon + 1 : at])
    if len(records) != count or at != len(result):
        raise StoreUnavailableError(
            f"WebdisStore: Webdis answered a batch of reads that does not parse ({len(result)} bytes)"
        )
    return records


def _encode(arg: str) -> str:
    """Percent-encode one path argument: ``quote`` leaves ``.`` alone, but Webdis reads it as a format."""
    return quote(arg, safe="").replace(".", "%2E")


def _bulk_string(reply: bytes) -> bytes | None:
    r"""Decode a RESP bulk string (``$N\r\n<bytes>\r\n``); ``None`` if ``reply`` is anything else.

    Raises:
        StoreUnavailableError: Redis answered an error that means "try later".
        WebdisError: Redis answered another error.
    """
    if reply.startswith(b"-"):
        message = _ARGUMENTS.sub(" (arguments not shown)", reply[1:].rstrip(b"\r\n").decode(errors="replace"))
        if _TRANSIENT_ERRORS.match(message):
            raise StoreUnavailableError(f"WebdisStore: Redis answered {message!r}")
        raise WebdisError(f"Redis answered {message!r}")
    header, _, data = reply.partition(b"\r\n")
    if header[:1] != b"$" or not header[1:].isdigit() or len(data) != int(header[1:]) + 2 or data[-2:] != b"\r\n":
        return None
    return data[:-2]


async def _drop_connection(response: httpx.Response) -> None:
    """Close the connection a wrong reply came on.

    The right reply may follow on it, and would then be taken for the reply to the next request.
    httpx's pool discards a closed connection instead of reusing it.
    """
    stream = response.extensions.get("network_stream")
    if stream is not None:
        await stream.aclose()
