"""RedisStore on Redis Sentinel: the master found through the sentinels, ``WAIT`` for replicas,
and a failover during load.

The ``sentinel_setup`` fixture (tests/servers.py) runs one master, one replica and three
sentinels. The failover test asks the sentinels to fail the master over (``SENTINEL FAILOVER``)
while clients log in, write and read: every response must be a 2xx or a 503, every write
acknowledged before (or during) the failover must be readable after it, and the same app, not
restarted, must serve again. It waits on the sentinels' own state, never a fixed sleep.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis, RedisCluster
from redis.asyncio.sentinel import Sentinel
from redis.exceptions import ResponseError

from litestar_flash_sessions import SessionConfig, StoreUnavailableError
from litestar_flash_sessions.stores.redis import RedisStore
from tests.app import build_app
from tests.conftest import in_loop_client
from tests.harness_redis import delete_keys, unique_prefix
from tests.servers import SentinelSetup

DEADLINE = 30.0
"""Seconds the sentinels may take to agree on a new master (a manual failover takes about one)."""


def sentinel_clients(setup: SentinelSetup) -> list[Redis]:
    return [Redis(host=host, port=port, decode_responses=True, socket_timeout=2) for host, port in setup.sentinels]


async def roles(setup: SentinelSetup) -> tuple[tuple[str, int], dict[str, Any]]:
    """Where every sentinel says the master is (they must agree), and its replication info."""
    clients = sentinel_clients(setup)
    try:
        answers = {tuple(await client.sentinel_get_master_addr_by_name(setup.service)) for client in clients}
    finally:
        for client in clients:
            await client.aclose()
    if len(answers) != 1:
        return ("", 0), {}
    host, port = answers.pop()
    async with Redis(host=host, port=int(port), decode_responses=True, socket_timeout=2) as master:
        return (str(host), int(port)), await master.info("replication")


async def settled(setup: SentinelSetup) -> tuple[str, int]:
    """Wait until the sentinels agree on a master that is one and has a replica in sync; return it."""
    deadline = time.monotonic() + DEADLINE
    while True:
        try:
            master, info = await roles(setup)
            if info.get("role") == "master" and info.get("connected_slaves", 0) >= 1:
                replica = info["slave0"]
                if replica.get("state") == "online":
                    return master
        except (OSError, ConnectionError, TimeoutError) as exc:  # a node mid-switch
            last = exc
        else:
            last = info
        assert time.monotonic() < deadline, f"the sentinel setup did not settle: {last!r}"
        await asyncio.sleep(0.05)


async def replica_of(master: tuple[str, int]) -> Redis:
    """A client of the master's replica (read-only), connected directly."""
    async with Redis(host=master[0], port=master[1], decode_responses=True) as client:
        replica = (await client.info("replication"))["slave0"]
    return Redis(host=replica["ip"], port=int(replica["port"]))


@asynccontextmanager
async def sentinel_store(setup: SentinelSetup, **options: Any) -> AsyncIterator[RedisStore]:
    """A started store from :meth:`RedisStore.from_sentinel`, its keys deleted afterwards."""
    await settled(setup)
    store = RedisStore.from_sentinel(setup.sentinels, setup.service, prefix=unique_prefix(), **options)
    await store.startup()
    try:
        yield store
    finally:
        await store.shutdown()
        host, port = await settled(setup)
        async with Redis(host=host, port=port) as client:
            await delete_keys(client, store.prefix)


# --- the store ------------------------------------------------------------------------------


async def test_a_write_with_wait_is_on_the_replica_when_it_returns(sentinel_setup: SentinelSetup) -> None:
    async with sentinel_store(sentinel_setup, wait_replicas=1) as store:
        replica = await replica_of(await settled(sentinel_setup))
        try:
            assert await store.set("a", b"one", 60, None)
            assert await replica.get(store.key("a")) == b"one", "WAIT returned: the replica has it, no polling"
            assert await store.set("a", b"two", 60, b"one")
            assert await replica.get(store.key("a")) == b"two"
            assert not await store.set("a", b"three", 60, b"one"), "a conflict writes nothing (and waits for nothing)"
            await store.delete("a")
            assert await replica.get(store.key("a")) is None, "a logout is on the replica too"
        finally:
            await replica.aclose()


async def test_fewer_replicas_than_asked_is_a_503_and_the_write_stands(sentinel_setup: SentinelSetup) -> None:
    async with sentinel_store(sentinel_setup, wait_replicas=2, timeout=2.0, wait_timeout=0.2) as store:
        started = time.monotonic()
        with pytest.raises(StoreUnavailableError, match=r"reached 1 of the 2 replicas .* within 200 ms"):
            await store.set("a", b"one", 60, None)
        assert time.monotonic() - started < 1.5, "WAIT gives up after wait_timeout, within the store's timeout"
        assert await store.get("a", None) == b"one", "the write stands on the master (and on the one replica)"


async def test_a_master_demoted_under_the_store_is_a_503(sentinel_setup: SentinelSetup) -> None:
    """A connection that still reaches the old master after a failover: a write answers READONLY,
    and a compare-and-set that lost (it wrote nothing, so Redis ran it) meets WAIT's "cannot be
    used with replica instances". Both are 503s, never a 500."""
    replica = await replica_of(await settled(sentinel_setup))
    store = RedisStore(replica, unique_prefix(), wait_replicas=1)
    try:
        with pytest.raises(StoreUnavailableError, match="WAIT failed"):
            await store.set("a", b"two", 60, b"one")  # nothing there: a conflict
        with pytest.raises(StoreUnavailableError, match="ReadOnlyError"):
            await store.set("a", b"one", 60, None)
        with pytest.raises(StoreUnavailableError, match="ReadOnlyError"):
            await store.delete("a")
    finally:
        await replica.aclose()


async def test_an_unknown_service_is_a_503(sentinel_setup: SentinelSetup) -> None:
    store = RedisStore.from_sentinel(sentinel_setup.sentinels, "no-such-master", prefix=unique_prefix(), timeout=2)
    try:
        with pytest.raises(StoreUnavailableError, match="MasterNotFoundError"):
            await store.get("a", None)
    finally:
        await store.shutdown()


async def test_a_store_from_sentinel_closes_its_client_and_a_given_client_stays_the_callers(
    sentinel_setup: SentinelSetup,
) -> None:
    name = f"lfs-sentinel-{uuid.uuid4().hex[:8]}"
    master = await settled(sentinel_setup)

    async def named_connections() -> int:
        async with Redis(host=master[0], port=master[1], decode_responses=True) as admin:
            return sum(1 for client in await admin.client_list() if client["name"] == name)

    owned = RedisStore.from_sentinel(sentinel_setup.sentinels, sentinel_setup.service, client_name=name)
    await owned.startup()
    await owned.get("a", None)
    assert await named_connections() == 1
    await owned.shutdown()
    assert await named_connections() == 0, "the store closed the client it made"

    sentinel = Sentinel(sentinel_setup.sentinels)  # type: ignore[no-untyped-call]
    given = sentinel.master_for(sentinel_setup.service, redis_class=Redis, client_name=name)
    store = RedisStore(given, unique_prefix(), wait_replicas=1)
    await store.startup()
    assert await store.set("a", b"one", 60, None)
    await store.shutdown()
    assert await given.ping(), "a client passed in stays usable after the store stops"
    await given.delete(store.key("a"))
    await given.aclose()
    for client in sentinel.sentinels:
        await client.aclose()


async def test_wait_options_are_checked(redis_cluster_url: str) -> None:
    cluster = RedisCluster.from_url(redis_cluster_url)
    try:
        with pytest.raises(ValueError, match=r"wait_replicas needs a redis\.asyncio\.Redis client"):
            RedisStore(cluster, wait_replicas=1)
    finally:
        await cluster.aclose()
    client = Redis()
    with pytest.raises(ValueError, match="wait_replicas must be"):
        RedisStore(client, wait_replicas=-1)
    with pytest.raises(ValueError, match="wait_timeout must be"):
        RedisStore(client, wait_replicas=1, timeout=1.0, wait_timeout=1.0)
    with pytest.raises(ValueError, match="sentinels must name"):
        RedisStore.from_sentinel([], "mymaster")
    await client.aclose()


# --- a failover during load -----------------------------------------------------------------


@dataclass
class Load:
    """What the clients saw: each response's status with its time, and each worker's writes."""

    statuses: list[tuple[float, int]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    by_kind: dict[str, Counter[int]] = field(default_factory=lambda: {"write": Counter(), "read": Counter()})

    def record(self, response: httpx.Response) -> int:
        self.statuses.append((time.monotonic(), response.status_code))
        self.by_kind["write" if response.request.method == "POST" else "read"][response.status_code] += 1
        if not (200 <= response.status_code < 300 or response.status_code == 503):
            self.problems.append(f"{response.request.method} {response.request.url.path}: {response.status_code}")
        return response.status_code


async def worker(client: httpx.AsyncClient, load: Load, stop: asyncio.Event) -> None:
    """Write an increasing counter to a session of its own and read it back, until ``stop``.

    A read must never show less than the last write acknowledged with a 2xx (WAIT put it on the
    replica that the failover promotes), nor more than the last write tried (a 503 write may
    stand: it reached the master).
    """
    acknowledged, tried = -1, -1
    while not stop.is_set():
        tried += 1
        if load.record(await client.post("/set", json={"n": tried})) == 200:
            acknowledged = tried
        response = await client.get("/read/n")
        if load.record(response) == 200 and acknowledged >= 0:
            value = response.json()["value"]
            if value is None or not acknowledged <= value <= tried:
                load.problems.append(f"read n={value} after acknowledging {acknowledged} and trying {tried}")
        await asyncio.sleep(0.005)


async def failover(setup: SentinelSetup, old: tuple[str, int], promoted: list[float]) -> tuple[str, int]:
    """Ask a sentinel to fail ``old`` over, then wait until every sentinel names the new master,
    it is a master and the old one replicates it (Sentinel turns the old master into a replica
    some seconds after the promotion). The time of the promotion is added to ``promoted``."""
    sentinel = sentinel_clients(setup)[0]
    deadline = time.monotonic() + DEADLINE
    try:
        while True:  # NOGOODSLAVE/INPROG: a sentinel that has not yet seen the replica in sync
            try:
                await sentinel.execute_command("SENTINEL", "FAILOVER", setup.service)
                break
            except ResponseError as exc:
                if time.monotonic() > deadline:
                    raise AssertionError("the sentinels refused the failover") from exc
                await asyncio.sleep(0.1)
        while (await sentinel.sentinel_get_master_addr_by_name(setup.service))[1] == str(old[1]):
            assert time.monotonic() < deadline, "the sentinels never named a new master"
            await asyncio.sleep(0.02)
        promoted.append(time.monotonic())
    finally:
        await sentinel.aclose()
    while True:
        new = await settled(setup)
        if new != old:
            return new
        assert time.monotonic() < deadline, "the new master never got its replica"
        await asyncio.sleep(0.05)


async def test_a_failover_during_load_gives_2xx_or_503_and_loses_no_acknowledged_session(
    sentinel_setup: SentinelSetup, capsys: pytest.CaptureFixture[str]
) -> None:
    store = RedisStore.from_sentinel(
        sentinel_setup.sentinels,
        sentinel_setup.service,
        prefix=unique_prefix(),
        timeout=2.0,
        wait_replicas=1,
        wait_timeout=0.5,
        socket_timeout=1.0,
        socket_connect_timeout=1.0,
    )
    old = await settled(sentinel_setup)
    app = build_app(SessionConfig(store=store))
    load, stop = Load(), asyncio.Event()
    async with app.lifespan():
        # Sessions logged in before the failover.
        before = [in_loop_client(app) for _ in range(20)]
        for number, client in enumerate(before):
            assert (await client.post("/set", json={"user": f"user-{number}"})).status_code == 200

        workers = [in_loop_client(app) for _ in range(4)]
        tasks = [asyncio.create_task(worker(client, load, stop)) for client in workers]
        while len(load.statuses) < 40:  # the load runs  # noqa: ASYNC110 (polling what the workers recorded)
            await asyncio.sleep(0.01)
        failover_started, promoted = time.monotonic(), list[float]()
        new = await failover(sentinel_setup, old, promoted)
        failover_done = time.monotonic()
        # Go on until every worker has written and read successfully since the failover ended.
        deadline = failover_done + DEADLINE
        while sum(1 for at, status in load.statuses if at > failover_done and status == 200) < 40:
            assert time.monotonic() < deadline, f"the app did not recover: {Counter(s for _, s in load.statuses)}"
            await asyncio.sleep(0.01)
        stop.set()
        await asyncio.gather(*tasks)

        for number, client in enumerate(before):
            response = await client.get("/read/user")
            assert response.status_code == 200, response.text
            assert response.json()["value"] == f"user-{number}", "a session written before the failover survived it"
        fresh = in_loop_client(app)
        assert (await fresh.post("/set", json={"user": "after"})).status_code == 200, "new sessions work, no restart"
        assert (await fresh.get("/read/user")).json()["value"] == "after"
        for client in [*before, *workers, fresh]:
            await client.aclose()

    assert new != old
    assert not load.problems, load.problems
    unavailable = [at for at, status in load.statuses if status == 503]
    span = (unavailable[-1] - unavailable[0]) if unavailable else 0.0
    with capsys.disabled():  # the numbers docs/stores.md quotes
        print(
            f"\nfailover {old[1]} -> {new[1]}: promoted after {promoted[0] - failover_started:.2f} s, old master a "
            f"replica after {failover_done - failover_started:.2f} s; writes {dict(load.by_kind['write'])}, reads "
            f"{dict(load.by_kind['read'])}; 503s from {unavailable[0] - failover_started if unavailable else 0:.2f} s "
            f"over {span:.2f} s"
        )
    async with Redis(host=new[0], port=new[1]) as client:
        await delete_keys(client, store.prefix)
