"""Run the contract suite on RedisStore: once on a standalone Redis, through a client the store
makes and owns (``RedisStore.from_url``), once on a Redis Cluster, through a client it is given.

Each test gets its own key prefix, and its keys are deleted after it, so that tests sharing the
servers never see each other's sessions. Redis keeps time itself (``injects_clock=False``): the
contract's expiry test waits for real.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from redis.asyncio import Redis, RedisCluster

from litestar_flash_sessions import SessionBackend
from litestar_flash_sessions.stores.redis import RedisStore
from tests.harness import FakeClock, Harness, register, server_url


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
async def _redis(clock: FakeClock) -> AsyncIterator[SessionBackend]:
    url = server_url("REDIS_URL")
    store = RedisStore.from_url(url, prefix=unique_prefix())
    try:
        yield store
    finally:
        await store.shutdown()
        async with Redis.from_url(url) as client:  # the store's own client is closed by now
            await delete_keys(client, store.prefix)


@asynccontextmanager
async def _redis_cluster(clock: FakeClock) -> AsyncIterator[SessionBackend]:
    async with open_redis_store(server_url("REDIS_CLUSTER_URL"), cluster=True) as store:
        yield store


register(Harness("redis", _redis, injects_clock=False))
register(Harness("redis-cluster", _redis_cluster, injects_clock=False))
