"""A store in Redis (standalone or Redis Cluster), with Redis's own key expiry.

Each session is one string key, ``prefix + session_id``, holding the record's bytes. Redis
expires keys itself and never returns an expired one, so abandoned sessions vanish without a
reaper and an expired session can never be read back.

Round trips: :meth:`RedisStore.get` is one ``GET`` (or ``GETEX ... EX n`` when it also slides
the expiry); :meth:`RedisStore.set` is one ``EVALSHA`` of the compare-and-set script shared with
:class:`~litestar_flash_sessions.stores.webdis.WebdisStore` (``litestar_flash_sessions.stores._lua``),
which compares and writes atomically on the server; :meth:`RedisStore.delete` is one ``DEL``.
Each command touches one key, so everything works unchanged on Redis Cluster.

Failover: :meth:`RedisStore.from_sentinel` makes a client that asks Redis Sentinel for the
current master (redis-py's ``Sentinel.master_for``); with ``wait_replicas`` each write and
delete is followed by ``WAIT`` in the same round trip (a pipeline), so a write the browser is
told about is on that many replicas, and survives the master's loss.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from typing import TYPE_CHECKING, Any, Final, cast

from redis import exceptions as redis_errors
from redis.asyncio import BlockingConnectionPool, Redis, RedisCluster
from redis.asyncio.sentinel import Sentinel

from litestar_flash_sessions.stores._batch import BatchedReads, Read
from litestar_flash_sessions.stores._lua import CAS_SCRIPT, CAS_SHA, READ_SCRIPT, READ_SHA, WRITTEN, cas_arguments
from litestar_flash_sessions.stores.base import (
    SessionStore,
    StoreUnavailableError,
    guarded,
    validate_key_prefix,
    validate_timeout,
)

if TYPE_CHECKING:
    from collections.abc import Awaitable, Sequence

__all__ = ("RedisStore",)

_UNREACHABLE: tuple[type[BaseException], ...] = (
    redis_errors.ConnectionError,  # refused, reset, pool exhausted, LOADING (BusyLoadingError), and
    # Sentinel's MasterNotFoundError (no sentinel knows a master now) and "the previous master is
    # now a slave" (a sentinel-managed connection met READONLY on a demoted master)
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
        wait_replicas: After each write and delete, ``WAIT`` until this many replicas have it
            (in the same round trip: a pipeline); ``0``, the default, does not wait. A write
            that fewer replicas acknowledge within ``wait_timeout`` raises
            :class:`~litestar_flash_sessions.stores.StoreUnavailableError` (a ``503``): it
            stands on the master, but the browser is not told it was stored (docs/stores.md).
            Not with a ``RedisCluster`` client.
        wait_timeout: Seconds ``WAIT`` waits for the replicas at most (whole milliseconds are
            sent); less than ``timeout``.

    Raises:
        TypeError: ``client`` is not an asyncio Redis or RedisCluster client.
        ValueError: ``client`` decodes responses, ``prefix`` holds other characters, or
            ``wait_replicas``/``wait_timeout`` are out of range (or given with a cluster client).
    """

    __slots__ = ("_client", "_owns_client", "_prefix", "_sentinel", "_timeout", "_wait_replicas", "_wait_timeout_ms")

    def __init__(
        self,
        client: Redis | RedisCluster,
        prefix: str = "session_",
        *,
        timeout: float | None = 5.0,
        wait_replicas: int = 0,
        wait_timeout: float = 1.0,
    ) -> None:
        if not isinstance(client, (Redis, RedisCluster)):
            raise TypeError(
                f"client must be a redis.asyncio.Redis or redis.asyncio.RedisCluster, not {type(client).__name__}"
            )
        if client.get_encoder().decode_responses:
            raise ValueError(
                "the Redis client decodes responses to str, but session records are bytes: "
                "create it with decode_responses=False"
            )
        if isinstance(wait_replicas, bool) or not isinstance(wait_replicas, int) or wait_replicas < 0:
            raise ValueError(f"wait_replicas must be a whole number of replicas, 0 or more, not {wait_replicas!r}")
        if wait_replicas and isinstance(client, RedisCluster):
            raise ValueError(
                "wait_replicas needs a redis.asyncio.Redis client (standalone or from Sentinel): on a RedisCluster "
                "client WAIT would not reach the node that took the write"
            )
        if wait_replicas and not (wait_timeout > 0 and (timeout is None or wait_timeout < timeout)):
            raise ValueError(
                f"wait_timeout must be more than 0 seconds and less than timeout ({timeout}), not {wait_timeout!r}"
            )
        self._client = client
        self._slots = _slots_for(client)
        self._owns_client = False
        self._sentinel: Sentinel | None = None
        self._prefix = validate_key_prefix(prefix)
        self._timeout = validate_timeout(timeout)
        self._wait_replicas = wait_replicas
        self._wait_timeout_ms = max(1, round(wait_timeout * 1000))

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

    @classmethod
    def from_sentinel(
        cls,
        sentinels: Sequence[tuple[str, int]],
        service_name: str,
        *,
        prefix: str = "session_",
        timeout: float | None = 5.0,
        wait_replicas: int = 0,
        wait_timeout: float = 1.0,
        sentinel_options: dict[str, Any] | None = None,
        **client_options: Any,
    ) -> RedisStore:
        """Return a store on the master that Redis Sentinel names, through a client of its own.

        The client (redis-py's ``Sentinel(...).master_for(service_name)``) asks the sentinels
        where the master is when it connects, and again after a failover: a connection that
        meets the demoted master (``READONLY``) or a dead one is dropped, and the next command
        finds the new master. Requests in flight meanwhile answer ``503``; no restart is needed.
        The store closes the client and its sentinel connections in :meth:`shutdown`.

        Args:
            sentinels: ``(host, port)`` of each sentinel; any one that answers is enough.
            service_name: The master's name in the sentinels' configuration (``mymaster``).
            prefix: As for the constructor.
            timeout: As for the constructor.
            wait_replicas: As for the constructor: the number of replicas, for an acknowledged
                write to survive a failover (with fewer, the replica that acknowledged may not
                be the one promoted; see docs/stores/redis.md).
            wait_timeout: As for the constructor.
            sentinel_options: Keyword arguments for the connections to the sentinels themselves
                (redis-py's ``sentinel_kwargs``: ``password``, ``socket_timeout``...).
            client_options: Keyword arguments for the connections to the master (``password``,
                ``db``, ``socket_timeout``, ``max_connections``...); ``decode_responses`` must
                stay ``False``.

        Raises:
            ValueError: As for the constructor, or ``sentinels`` is empty.
        """
        if not sentinels:
            raise ValueError("sentinels must name at least one (host, port)")
        sentinel = Sentinel(list(sentinels), sentinel_kwargs=sentinel_options, **client_options)  # type: ignore[no-untyped-call]
        client = sentinel.master_for(service_name, redis_class=Redis)
        try:
            store = cls(client, prefix, timeout=timeout, wait_replicas=wait_replicas, wait_timeout=wait_timeout)
        except (TypeError, ValueError):
            client.connection_pool.reset()  # nothing connected yet: nothing to await
            raise
        store._owns_client = True
        store._sentinel = sentinel
        return store

    @property
    def prefix(self) -> str:
        """The prefix of every key this store writes."""
        return self._prefix

    def key(self, session_id: str) -> str:
        """Return the Redis key holding the session ``session_id``."""
        return self._prefix + session_id

    async def startup(self) -> None:
        """Check that a client the store was given holds no connection of another event loop;
        learn a cluster's layout before the first requests.

        Raises:
            StoreUnavailableError: The cluster could not be reached (the app starts anyway).
            RuntimeError: The client has idle connections opened on another event loop, which
                redis-py cannot use on the app's: the message says to create the client on the
                app's loop or to use :meth:`from_url`.
        """
        if not self._owns_client:
            _check_loop(self._client)
        self._slots = _slots_for(self._client)  # a semaphore binds to the loop that first waits on it
        if isinstance(self._client, RedisCluster):
            # redis-py's cluster client, learning the layout on its first commands, can fail some
            # of a burst of them with an AttributeError (a connection without its stream yet):
            # it learns it here first. (A cluster down now: the app starts with a warning, and
            # the client learns the layout at the first command that reaches it.)
            await guarded(self._client.initialize(), self._timeout, "RedisStore", _UNREACHABLE)

    async def shutdown(self) -> None:
        """Close the client if the store created it (:meth:`from_url`); a client it was given stays
        open, but its idle connections opened on the app's event loop are disconnected, so that an
        app started later on another loop can use it (it reconnects on demand).

        (A closed redis-py client reconnects when used again, so a store restarted with the app
        works on.)
        """
        if self._owns_client:
            await self._client.aclose()
            if self._sentinel is not None:
                for sentinel_client in self._sentinel.sentinels:
                    await sentinel_client.aclose()
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
            result = await self._waited("EVALSHA", CAS_SHA, 1, *args)
        except redis_errors.NoScriptError:
            # The server does not know the script yet (first use, restart, SCRIPT FLUSH, a new
            # cluster node, a master just promoted): EVAL runs it and caches it, so later calls
            # find it by its SHA.
            result = await self._waited("EVAL", CAS_SCRIPT, 1, *args)
        return result == WRITTEN

    async def delete(self, session_id: str) -> None:
        """Delete the key, if any (then ``WAIT`` for the replicas, if configured: a logout lost in
        a failover would bring the session back).
        """
        await self._waited("DEL", self.key(session_id))

    async def _waited(self, *command: str | int | bytes) -> object:
        """Run one write command; with ``wait_replicas``, pipelined with ``WAIT`` (one round trip).

        Raises:
            StoreUnavailableError: As :meth:`_guard`, or fewer replicas than ``wait_replicas``
                acknowledged the write within ``wait_timeout``.
            redis.exceptions.ResponseError: As :meth:`_guard` (``NoScriptError`` included).
        """
        if not self._wait_replicas:
            return await self._guard(self._client.execute_command(*command))
        pipeline = cast("Redis", self._client).pipeline(transaction=False)
        pipeline.execute_command(*command)
        pipeline.execute_command("WAIT", self._wait_replicas, self._wait_timeout_ms)
        # raise_on_error=False: redis-py would put the command's arguments (the record) into the
        # message of the first error; the replies are checked here instead, errors as they came.
        replies = cast("list[object]", await self._guard(pipeline.execute(raise_on_error=False)))
        result, acknowledged = replies
        if isinstance(result, redis_errors.ResponseError):
            await self._guard(_raised(result))  # mapped as any reply (NoScriptError kept for set())
        if isinstance(acknowledged, redis_errors.ResponseError):
            # "ERR WAIT cannot be used with replica instances": a failover demoted this master
            # between the client's lookup and the command; the next connection finds the new one.
            raise StoreUnavailableError(f"RedisStore: WAIT failed ({acknowledged}): is the master a replica now?")
        if command[0] != "DEL" and result != WRITTEN:
            return result  # a conflict wrote nothing: no replica has anything to acknowledge
        if not isinstance(acknowledged, int) or acknowledged < self._wait_replicas:
            raise StoreUnavailableError(
                f"RedisStore: the write reached {acknowledged} of the {self._wait_replicas} replicas "
                f"wait_replicas asks for within {self._wait_timeout_ms} ms (it stands on the master)"
            )
        return result

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
            return await guarded(self._in_slot(reply), self._timeout, "RedisStore", _UNREACHABLE)
        except redis_errors.ResponseError as exc:
            # Redis may echo the command's arguments (the key, the record): cut them off in the
            # exception itself, which keeps its class (set() catches NoScriptError) and traceback.
            exc.args = (_ARGUMENTS.sub(" (arguments not shown)", str(exc)),)
            if _means_not_now(exc):
                raise StoreUnavailableError(f"RedisStore: Redis answered {exc}") from exc
            raise

    async def _in_slot(self, reply: Awaitable[object] | object) -> object:
        """Await one command once a connection of the client's pool is free (under the store's
        time-out): redis-py's pool raises "Too many connections" rather than wait, which would
        answer 503 to a burst of requests on a healthy server (a cluster's node pools wait).
        """
        if self._slots is None:
            return await cast("Awaitable[object]", reply)
        try:
            await self._slots.acquire()
        except BaseException:  # timed out waiting: the command, made already, is never sent
            if asyncio.iscoroutine(reply):
                reply.close()
            raise
        try:
            return await cast("Awaitable[object]", reply)
        finally:
            self._slots.release()


def _slots_for(client: Redis | RedisCluster) -> asyncio.Semaphore | None:
    """Return a semaphore of as many slots as the client's pool has connections (none for a
    cluster, or for a pool that waits by itself: redis-py's ``BlockingConnectionPool``).
    """
    if isinstance(client, RedisCluster) or isinstance(client.connection_pool, BlockingConnectionPool):
        return None
    return asyncio.Semaphore(client.connection_pool.max_connections)


async def _raised(error: BaseException) -> object:
    """Raise ``error`` from inside an awaitable, so that :meth:`RedisStore._guard` maps it."""
    raise error


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
