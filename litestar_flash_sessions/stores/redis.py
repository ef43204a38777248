"""A store in Redis (standalone or Redis Cluster), with Redis's own key expiry.

Each session is one string key, ``prefix + session_id``, holding the record's bytes. Redis
expires keys itself and never returns an expired one, so abandoned sessions vanish without a
reaper and an expired session can never be read back.

Round trips: :meth:`RedisStore.get` is one ``GET`` (or ``GETEX ... EX n`` when it also slides
the expiry); :meth:`RedisStore.set` is one ``EVALSHA`` of a small Lua script that compares and
writes atomically on the server; :meth:`RedisStore.delete` is one ``DEL``. Each command touches
one key, so everything works unchanged on Redis Cluster.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, cast

from redis import exceptions as redis_errors
from redis.asyncio import Redis, RedisCluster

from litestar_flash_sessions.stores.base import SessionStore, guarded, validate_key_prefix

if TYPE_CHECKING:
    from collections.abc import Awaitable

__all__ = ("RedisStore",)

_UNREACHABLE: tuple[type[BaseException], ...] = (
    redis_errors.ConnectionError,  # refused, reset, pool exhausted, server still loading
    redis_errors.TimeoutError,  # the client's own socket_timeout
    redis_errors.ClusterError,  # CLUSTERDOWN, MASTERDOWN, too many redirections
    redis_errors.TryAgainError,  # a slot is being migrated
    redis_errors.RedisClusterException,  # no reachable node, slot not covered
)

_CAS_SCRIPT = b"""
local current = redis.call('GET', KEYS[1])
if ARGV[2] == '' then
    if current then return 0 end
elseif not current or redis.sha1hex(current) ~= ARGV[2] then
    return 0
end
if ARGV[3] == '' then
    redis.call('SET', KEYS[1], ARGV[1])
else
    redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[3])
end
return 1
"""
"""Compare-and-set: ``KEYS[1]`` the key; ``ARGV[1]`` the new record; ``ARGV[2]`` the SHA-1 (hex)
of the record the request read, or ``''`` when the key must not exist; ``ARGV[3]`` the TTL in
seconds, or ``''`` for none. A plain ``SET`` (no ``KEEPTTL``) also drops an old TTL, which is
what "no expiry" means. Returns 1 when written, 0 on conflict (nothing written)."""

_CAS_SHA = hashlib.sha1(_CAS_SCRIPT, usedforsecurity=False).hexdigest()


class RedisStore(SessionStore):
    """Keep session records in Redis, under ``prefix + session_id``, with native TTLs.

    The store does not own ``client``: it never closes it, so one client can serve the app and
    the sessions. Close it yourself when the app stops (for example in a lifespan hook).

    Args:
        client: A ``redis.asyncio.Redis`` or ``redis.asyncio.RedisCluster`` created with
            ``decode_responses=False`` (the default): records are bytes.
        prefix: Prepended to every session id to form the key: letters, digits and ``_ - : .``,
            1 to 100 characters (``"app:session:"`` is fine).
        timeout: Seconds one command may take before the store counts as unavailable;
            ``None`` waits as long as the client does.

    Raises:
        TypeError: ``client`` is not an asyncio Redis or RedisCluster client.
        ValueError: ``client`` decodes responses, or ``prefix`` holds other characters.
    """

    __slots__ = ("_client", "_prefix", "_timeout")

    def __init__(self, client: Redis | RedisCluster, prefix: str = "session_", *, timeout: float | None = 5.0) -> None:
        if not isinstance(client, (Redis, RedisCluster)):
            raise TypeError(
                f"client must be a redis.asyncio.Redis or redis.asyncio.RedisCluster, not {type(client).__name__}"
            )
        if client.get_encoder().decode_responses:
            raise ValueError(
                "the Redis client decodes responses to str, but session records are bytes: "
                "create it with decode_responses=False"
            )
        self._client = client
        self._prefix = validate_key_prefix(prefix)
        self._timeout = timeout

    @property
    def prefix(self) -> str:
        """The prefix of every key this store writes."""
        return self._prefix

    def key(self, session_id: str) -> str:
        """Return the Redis key holding the session ``session_id``."""
        return self._prefix + session_id

    async def get(self, session_id: str, expires_in: int | None) -> bytes | None:
        """Return the record: ``GETEX key EX expires_in`` to slide the expiry, else ``GET key``."""
        key = self.key(session_id)
        reply = self._client.get(key) if expires_in is None else self._client.getex(key, ex=expires_in)
        return cast("bytes | None", await self._guard(reply))

    async def set(self, session_id: str, record: bytes, expires_in: int | None, previous: bytes | None) -> bool:
        """Run the compare-and-set script: write only if the key still holds ``previous``."""
        # A hash, not the record itself, keeps the upload small. It only tells "unchanged since I
        # read it" from "changed": a collision could at worst lose one concurrent change.
        previous_hash = "" if previous is None else hashlib.sha1(previous, usedforsecurity=False).hexdigest()
        ttl = "" if expires_in is None else str(expires_in)
        args = (self.key(session_id), record, previous_hash, ttl)
        try:
            written = await self._guard(self._client.evalsha(_CAS_SHA, 1, *args))
        except redis_errors.NoScriptError:
            # The server does not know the script yet (first use, restart, SCRIPT FLUSH, a new
            # cluster node): EVAL runs it and caches it, so later calls find it by its SHA.
            written = await self._guard(self._client.eval(_CAS_SCRIPT.decode(), 1, *args))
        return bool(written)

    async def delete(self, session_id: str) -> None:
        """Delete the key, if any."""
        await self._guard(self._client.delete(self.key(session_id)))

    async def _guard(self, reply: Awaitable[object] | object) -> object:
        """Await one command under the store's timeout, mapping unreachability to a 503.

        (redis-py types each command for its sync and asyncio clients at once, hence the cast.)
        """
        return await guarded(cast("Awaitable[object]", reply), self._timeout, "RedisStore", _UNREACHABLE)
