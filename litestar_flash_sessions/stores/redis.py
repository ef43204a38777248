"""A store in Redis (standalone or Redis Cluster), with Redis's own key expiry.

Each session is one string key, ``prefix + session_id``, holding the record's bytes. Redis
expires keys itself and never returns an expired one, so abandoned sessions vanish without a
reaper and an expired session can never be read back.

Round trips: :meth:`RedisStore.get` is one ``GET`` (or ``GETEX ... EX n`` when it also slides
the expiry); :meth:`RedisStore.set` is one ``EVALSHA`` of the compare-and-set script shared with
:class:`~litestar_flash_sessions.stores.webdis.WebdisStore` (``litestar_flash_sessions.stores._lua``),
which compares and writes atomically on the server; :meth:`RedisStore.delete` is one ``DEL``.
Each command touches one key, so everything works unchanged on Redis Cluster.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from typing import TYPE_CHECKING, Any, Final, cast

from redis import exceptions as redis_errors
from redis.asyncio import Redis, RedisCluster

from litestar_flash_sessions.stores._batch import BatchedReads, Read
from litestar_flash_sessions.stores._lua import CAS_SCRIPT, CAS_SHA, READ_SCRIPT, READ_SHA, WRITTEN, cas_arguments
from litestar_flash_sessions.stores.base import SessionStore, StoreUnavailableError, guarded, validate_key_prefix

if TYPE_CHECKING:
    from collections.abc import Awaitable, Sequence

__all__ = ("RedisStore",)

_UNREACHABLE: tuple[type[BaseException], ...] = (
    redis_errors.ConnectionError,  # refused, reset, pool exhausted, LOADING (BusyLoadingError)
    redis_errors.TimeoutError,  # the client's own socket_timeout
    redis_errors.ClusterError,  # CLUSTERDOWN, MASTERDOWN (a replica cut off from its master), redirections
    redis_errors.TryAgainError,  # TRYAGAIN: a slot is being migrated
    redis_errors.RedisClusterException,  # no reachable node, slot not covered
    redis_errors.OutOfMemoryError,  # OOM: maxmemory reached under noeviction, writes refused until memory frees
    redis_errors.ReadOnlyError,  # READONLY: the node is a replica now (a failover demoted it)
)
"""The errors of redis-py that mean "the server cannot serve this now": a 503, not a bug."""

_NOT_NOW: Final = re.compile(
    # The code opens the error reply; Redis before 7 wraps an error a script's redis.call() met
    # as "ERR Error running script (call to f_<sha>): @user_script:<line>: <CODE> ...".
    r"(?:ERR )?(?:Error running script \(call to \w+\): (?:@user_script:\d+: )?)?"
    r"(OOM|READONLY|MASTERDOWN|LOADING|BUSY|TRYAGAIN|CLUSTERDOWN|NOREPLICAS)\b"
)
"""Redis error codes that mean "not now" when redis-py has no class of its own for them: BUSY (a
script or function runs past busy-reply-threshold), NOREPLICAS (min-replicas-to-write not met),
and any code an older redis-py does not know. The same codes as WebdisStore's."""

_ARGUMENTS: Final = re.compile(r",? with args beginning with:.*", re.DOTALL)
"""Where Redis echoes a command's arguments (``ERR unknown command 'EVALSHA', with args
beginning with: ...``): the key and the record, which must not reach a log."""

_NO_TAG = ""
"""The script's tag argument: a direct connection gets only its own replies, so it needs none."""


class RedisStore(BatchedReads, SessionStore):
    """Keep session records in Redis, under ``prefix + session_id``, with native TTLs.

    Who closes the client: a store made by :meth:`from_url` created its client, owns it and
    closes it in :meth:`shutdown` (when the app stops). A client passed to the constructor stays
    the caller's: the store never closes it, so one client can serve the app and the sessions;
    close it yourself when the app stops (for example in a lifespan hook).

    Event loops: redis-py connections work only on the event loop that opened them. When the app
    stops, the store disconnects the idle connections of a client it was given that were opened
    on the app's loop (the client stays usable: it reconnects when used again), so one client
    created at import time serves apps started one after another, each on a loop of its own (as
    successive ``TestClient`` contexts are). At start-up, a given client still holding
    connections of another loop (it was used outside the app, for example under ``asyncio.run``
    or in a test's own loop) fails the start with a ``RuntimeError`` saying what to do.

    Args:
        client: A ``redis.asyncio.Redis`` or ``redis.asyncio.RedisCluster`` created with
            ``decode_responses=False`` (the default): records are bytes.
        prefix: Prepended to every session id to form the key: letters, digits and ``_ - : .``,
            1 to 100 characters (``"app:session:"`` is fine).
        timeout: Seconds the commands of one request may take together (any other command, on
            its own) before the store counts as unavailable; ``None`` waits as long as the client
            does.

    Raises:
        TypeError: ``client`` is not an asyncio Redis or RedisCluster client.
        ValueError: ``client`` decodes responses, or ``prefix`` holds other characters.
    """

    __slots__ = ("_client", "_owns_client", "_prefix", "_timeout")

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
        self._owns_client = False
        self._prefix = validate_key_prefix(prefix)
        self._timeout = timeout

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        prefix: str = "session_",
        timeout: float | None = 5.0,
        cluster: bool = False,
        **client_options: Any,
    ) -> RedisStore:
        """Return a store on a client of its own, which it closes in :meth:`shutdown`.

        Args:
            url: A Redis URL (``redis://host:6379/0``, ``rediss://`` for TLS); with ``cluster``,
                the URL of any node of the cluster.
            prefix: As for the constructor.
            timeout: As for the constructor.
            cluster: Create a ``RedisCluster`` instead of a ``Redis`` client.
            client_options: Keyword arguments for ``Redis.from_url`` (or ``RedisCluster.from_url``),
                such as ``max_connections`` or ``socket_timeout``; ``decode_responses`` must stay
                ``False``.

        Raises:
            ValueError: ``client_options`` ask to decode responses, or ``prefix`` holds other characters.
        """
        client: Redis | RedisCluster = (
            RedisCluster.from_url(url, **client_options) if cluster else Redis.from_url(url, **client_options)
        )
        store = cls(client, prefix, timeout=timeout)
        store._owns_client = True
        return store

    @property
    def prefix(self) -> str:
        """The prefix of every key this store writes."""
        return self._prefix

    def key(self, session_id: str) -> str:
        """Return the Redis key holding the session ``session_id``."""
        return self._prefix + session_id

    async def startup(self) -> None:
        """Check that a client the store was given holds no connection of another event loop.

        Raises:
            RuntimeError: The client has idle connections opened on another event loop, which
                redis-py cannot use on the app's: the message says to create the client on the
                app's loop or to use :meth:`from_url`.
        """
        if not self._owns_client:
            _check_loop(self._client)

    async def shutdown(self) -> None:
        """Close the client if the store created it (:meth:`from_url`); a client it was given stays
        open, but its idle connections opened on the app's event loop are disconnected, so that an
        app started later on another loop can use it (it reconnects on demand).

        (A closed redis-py client reconnects when used again, so a store restarted with the app
        works on.)
        """
        if self._owns_client:
            await self._client.aclose()
            return
        loop = asyncio.get_running_loop()
        for connection, idle in _connections(self._client):
            if idle and _loop_of(connection) is loop:
                with contextlib.suppress(OSError, redis_errors.RedisError):
                    await connection.disconnect(nowait=True)

    async def _read_one(self, read: Read) -> bytes | None:
        """One read alone: ``GET``, or ``GETEX`` to slide the expiry."""
        session_id, expires_in = read
        key = self.key(session_id)
        reply = self._client.get(key) if expires_in is None else self._client.getex(key, ex=expires_in)
        return cast("bytes | None", await self._guard(reply))

    async def _read_many(self, reads: Sequence[Read]) -> list[bytes | None]:
        """Several reads in one round trip: on a standalone Redis one ``EVALSHA`` of
        :data:`~litestar_flash_sessions.stores._lua.READ_SCRIPT` over all the keys; on a Redis
        Cluster, whose scripts cannot take keys of several slots, a pipeline of ``GETEX`` (or
        ``GET``), which redis-py sends as one round trip per node (following redirections).
        """
        if isinstance(self._client, RedisCluster):
            pipeline = self._client.pipeline()
            for session_id, expires_in in reads:
                if expires_in is None:
                    pipeline.get(self.key(session_id))
                else:
                    pipeline.getex(self.key(session_id), ex=expires_in)
            return cast("list[bytes | None]", await self._guard(pipeline.execute()))
        args = [self.key(session_id) for session_id, _ in reads] + [
            "0" if expires_in is None else str(expires_in) for _, expires_in in reads
        ]
        try:
            records = await self._guard(self._client.evalsha(READ_SHA, len(reads), *args))
        except redis_errors.NoScriptError:  # not cached on the server yet: EVAL runs and caches it
            records = await self._guard(self._client.eval(READ_SCRIPT, len(reads), *args))
        return cast("list[bytes | None]", records)

    async def set(self, session_id: str, record: bytes, expires_in: int | None, previous: bytes | None) -> bool:
        """Run the compare-and-set script: write only if the key still holds ``previous``."""
        args = (self.key(session_id), _NO_TAG, *cas_arguments(expires_in, previous), record)
        try:
            result = await self._guard(self._client.evalsha(CAS_SHA, 1, *args))
        except redis_errors.NoScriptError:
            # The server does not know the script yet (first use, restart, SCRIPT FLUSH, a new
            # cluster node): EVAL runs it and caches it, so later calls find it by its SHA.
            result = await self._guard(self._client.eval(CAS_SCRIPT, 1, *args))
        return result == WRITTEN

    async def delete(self, session_id: str) -> None:
        """Delete the key, if any."""
        await self._guard(self._client.delete(self.key(session_id)))

    async def _guard(self, reply: Awaitable[object] | object) -> object:
        """Await one command under the store's timeout, mapping unreachability to a 503.

        (redis-py types each command for its sync and asyncio clients at once, hence the cast.)

        Raises:
            StoreUnavailableError: Redis is unreachable, timed out, or answered an error that
                means "not now" (out of memory, read-only replica, busy, loading, cluster down).
            redis.exceptions.ResponseError: Redis refused the command otherwise (a
                misconfiguration); any arguments Redis echoed in its message are cut off.
        """
        try:
            return await guarded(cast("Awaitable[object]", reply), self._timeout, "RedisStore", _UNREACHABLE)
        except redis_errors.ResponseError as exc:
            # Redis may echo the command's arguments (the key, the record): cut them off in the
            # exception itself, which keeps its class (set() catches NoScriptError) and traceback.
            exc.args = (_ARGUMENTS.sub(" (arguments not shown)", str(exc)),)
            if _means_not_now(exc):
                raise StoreUnavailableError(f"RedisStore: Redis answered {exc}") from exc
            raise


def _connections(client: Redis | RedisCluster) -> list[tuple[Any, bool]]:
    """Return the client's connections, each with whether it is idle (not checked out by a command).

    redis-py has no public API for this: the pools' attributes are read defensively, and a
    version without them yields nothing (the loop checks are then skipped).
    """
    found: dict[int, tuple[Any, bool]] = {}
    if isinstance(client, RedisCluster):
        nodes = [*client.get_nodes(), *getattr(client.nodes_manager, "startup_nodes", {}).values()]
        for node in nodes:
            free = {id(connection) for connection in getattr(node, "_free", ())}
            for connection in getattr(node, "_connections", ()):
                found[id(connection)] = (connection, id(connection) in free)
        return list(found.values())
    pool = client.connection_pool
    for connection in getattr(pool, "_in_use_connections", ()):
        found[id(connection)] = (connection, False)
    for connection in getattr(pool, "_available_connections", ()):
        found[id(connection)] = (connection, True)
    if client.connection is not None:  # a single-connection client: the one all its commands use
        found[id(client.connection)] = (client.connection, True)
    return list(found.values())


def _loop_of(connection: Any) -> asyncio.AbstractEventLoop | None:
    """Return the event loop a connection's socket belongs to, ``None`` when it is not connected."""
    loop = getattr(getattr(connection, "_writer", None), "_loop", None)
    return loop if isinstance(loop, asyncio.AbstractEventLoop) else None


def _check_loop(client: Redis | RedisCluster) -> None:
    """Refuse a client that holds connections of another event loop, which would fail on this one.

    Connections checked out on a loop that is closed are ignored: the task that held them is gone
    and never returns them, so no command here ever uses them.

    Raises:
        RuntimeError: An idle connection belongs to another loop, or a checked-out one to another
            loop that is not closed (the client is in use there).
    """
    current = asyncio.get_running_loop()
    for connection, idle in _connections(client):
        loop = _loop_of(connection)
        if loop is None or loop is current or (not idle and loop.is_closed()):
            continue
        where = "one closed now" if loop.is_closed() else "one still open"
        raise RuntimeError(
            f"RedisStore: the {type(client).__name__} client it was given holds connections opened on another "
            f"event loop than the app's ({where}), and redis-py connections only work on the loop that opened "
            "them. Do not use the client outside the app (asyncio.run, a test's own event loop) before the app "
            "starts: create it on the app's event loop (in an app factory or a lifespan hook), or let the store "
            "make its own with RedisStore.from_url(url, ...). (A client shared by apps started one after "
            "another, such as successive TestClient contexts, works: each app's store disconnects what it used "
            "when it stops.)"
        )


def _means_not_now(exc: redis_errors.ResponseError) -> bool:
    """Whether Redis's error reply means "try later" (see :data:`_NOT_NOW`)."""
    # Newer redis-py versions keep a code they know apart (``status_code``), out of the message.
    code = getattr(exc, "status_code", None)
    return _NOT_NOW.match(f"{code} {exc}" if code else str(exc)) is not None
