"""Run the contract suite on RedisStore: once on a standalone Redis, once on a Redis Cluster.

Each test gets its own key prefix, and its keys are deleted after it, so that tests sharing the
servers never see each other's sessions. Redis keeps time itself (``injects_clock=False``): the
contract's expiry test waits for real.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from redis.asyncio import Redis, RedisCluster

from litestar_flash_sessions.stores import CookieStore, SessionStore
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


@asynccontextmanager
async def _redis(clock: FakeClock) -> AsyncIterator[SessionStore | CookieStore]:
    async with open_redis_store(server_url("REDIS_URL")) as store:
        yield store


@asynccontextmanager
async def _redis_cluster(clock: FakeClock) -> AsyncIterator[SessionStore | CookieStore]:
    async with open_redis_store(server_url("REDIS_CLUSTER_URL"), cluster=True) as store:
        yield store


register(Harness("redis", _redis, injects_clock=False))
register(Harness("redis-cluster", _redis_cluster, injects_clock=False))
