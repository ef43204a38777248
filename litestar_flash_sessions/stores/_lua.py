"""The compare-and-set that :class:`~litestar_flash_sessions.stores.redis.RedisStore` and
:class:`~litestar_flash_sessions.stores.webdis.WebdisStore` both run in Redis: one script, one SHA.

Both stores keep a session as one Redis string key and write it only through this script, so
the two agree byte for byte on what a compare-and-set does. Its arguments are laid out for the
stricter caller, Webdis: no argument is empty (Webdis drops empty path segments, so "none" is
``-`` or ``0``), and the record comes last (Webdis appends a ``PUT`` body as the last argument).
"""

from __future__ import annotations

import hashlib
from typing import Final

__all__ = ("CAS_SCRIPT", "CAS_SHA", "READ_SCRIPT", "READ_SHA", "WRITTEN", "cas_arguments")

CAS_SCRIPT: Final = """
local current = redis.call('GET', KEYS[1])
if ARGV[2] == '-' then
    if current then return ARGV[1] .. '0' end
elseif not current or redis.sha1hex(current) ~= ARGV[2] then
    return ARGV[1] .. '0'
end
local record = ARGV[4] or ''
if ARGV[3] == '0' then
    redis.call('SET', KEYS[1], record)
else
    redis.call('SET', KEYS[1], record, 'EX', ARGV[3])
end
return ARGV[1] .. '1'
"""
"""Compare-and-set ``KEYS[1]``.

``ARGV[1]``: a tag returned in front of the result (Webdis's guard against replies meant for
another request; ``RedisStore`` sends an empty one). ``ARGV[2]``: the SHA-1 (hex) of the record
the request read, or ``-`` when the key must not exist. ``ARGV[3]``: the TTL in seconds, ``0``
for none (a plain ``SET``, without ``KEEPTTL``, also drops an old TTL, which is what "no expiry"
means). ``ARGV[4]``: the new record (Webdis drops an empty body, hence the ``or ''``).

Returns the tag, then ``1`` when written or ``0`` on conflict (nothing written then)."""

CAS_SHA: Final = hashlib.sha1(CAS_SCRIPT.encode(), usedforsecurity=False).hexdigest()
"""What ``EVALSHA`` calls the script by, once the server has cached it."""

WRITTEN: Final = b"1"
"""The script's result, after the tag, when it wrote the record."""


def cas_arguments(expires_in: int | None, previous: bytes | None) -> tuple[str, str]:
    """Return ``ARGV[2]`` and ``ARGV[3]`` of :data:`CAS_SCRIPT`: what to compare with, and the TTL.

    A hash of ``previous``, not the record itself, keeps the request small. It only tells
    "unchanged since I read it" from "changed": a collision could at worst lose one concurrent
    change.
    """
    previous_hash = "-" if previous is None else hashlib.sha1(previous, usedforsecurity=False).hexdigest()
    return previous_hash, "0" if expires_in is None else str(expires_in)


READ_SCRIPT: Final = """
local records = {}
for i, key in ipairs(KEYS) do
    if ARGV[i] == '0' then
        records[i] = redis.call('GET', key)
    else
        records[i] = redis.call('GETEX', key, 'EX', ARGV[i])
    end
end
return records
"""
"""Read several keys in one command, each with ``GET``, or ``GETEX ... EX n`` to slide its expiry.

``KEYS``: the keys; ``ARGV[i]``: the TTL in seconds to give ``KEYS[i]``, ``0`` to leave it. Returns
the records in the order of the keys, a missing one as nil (Lua's ``false``, which keeps its
place in the array). Its keys must share a slot on a Redis Cluster: there ``RedisStore`` batches
with a pipeline instead."""

READ_SHA: Final = hashlib.sha1(READ_SCRIPT.encode(), usedforsecurity=False).hexdigest()
"""What ``EVALSHA`` calls :data:`READ_SCRIPT` by."""
