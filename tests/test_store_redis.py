"""What is specific to RedisStore: keys and TTLs on the server, one command per store call,
sessions spread over a cluster, and a Redis that goes away or hangs.

Round trips are counted on the server, with ``MONITOR`` (see ``tests.harness_redis.server_commands``).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
import redis
from litestar.testing import TestClient
from redis.asyncio import Redis, RedisCluster

from litestar_flash_sessions import SessionConfig, StoreUnavailableError
from litestar_flash_sessions.commit import store_key
from litestar_flash_sessions.stores.redis import RedisStore
from tests.app import build_app
from tests.conftest import RecordingHandler, app_client, session_id
from tests.faults import (
    app_started_while_down,
    assert_every_change_answers_503,
    assert_serves_again,
    assert_session_requests_fail_fast,
    fault_proxy,
    free_port,
)
from tests.harness import wait_until
from tests.harness_redis import (
    FAULTS,
    ServerCommands,
    connect,
    delete_keys,
    open_redis_store,
    private_redis,
    records_under,
    redis_fault,
    server_commands,
    unique_prefix,
)

TTL = 100


@pytest.fixture(params=["standalone", "cluster"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[RedisStore]:
    cluster = request.param == "cluster"
    url = request.getfixturevalue("redis_cluster_url" if cluster else "redis_url")
    async with open_redis_store(url, cluster=cluster) as opened:
        yield opened


@pytest.fixture
async def standalone(redis_url: str) -> AsyncIterator[RedisStore]:
    async with open_redis_store(redis_url) as opened:
        yield opened


def client_of(store: RedisStore) -> Redis | RedisCluster:
    return store._client  # the test looks at the server through the store's own connection


# --- keys and TTLs on the server ------------------------------------------------------------


async def test_record_lives_under_prefix_and_id_with_its_ttl(store: RedisStore) -> None:
    redis_client = client_of(store)
    async with app_client(store, expire_after_seconds=100) as client:
        await client.post("/set", json={"user": "ann"})
        sid = await session_id(client)
        key = store.key(store_key(sid))  # the record's key hashes the id: a dump of Redis opens no session
        assert await redis_client.get(key) == await store.get(store_key(sid), None)
        assert 95_000 <= await redis_client.pttl(key) <= 100_000


async def test_a_read_slides_the_ttl_without_rewriting(store: RedisStore) -> None:
    redis_client = client_of(store)
    async with app_client(store, expire_after_seconds=100) as client:
        await client.post("/set", json={"user": "ann"})
        key = store.key(store_key(await session_id(client)))
        before = await redis_client.get(key)
        await redis_client.expire(key, 10)  # as if 90 s had passed
        assert (await client.get("/read/user")).json()["value"] == "ann"
        assert 95_000 <= await redis_client.pttl(key) <= 100_000
        assert await redis_client.get(key) == before


async def test_no_ttl_without_expiry(store: RedisStore) -> None:
    redis_client = client_of(store)
    async with app_client(store, expire_after_seconds=None) as client:
        await client.post("/set", json={"user": "ann"})
        key = store.key(store_key(await session_id(client)))
        assert await redis_client.ttl(key) == -1
        assert (await client.get("/read/user")).json()["value"] == "ann"
        assert await redis_client.ttl(key) == -1, "a read without sliding expiry must not add a TTL"


async def test_a_write_without_expiry_drops_an_old_ttl(store: RedisStore) -> None:
    sid = "s" * 43
    assert await store.set(sid, b"one", 100, None)
    assert await store.set(sid, b"two", None, b"one")
    assert await client_of(store).ttl(store.key(sid)) == -1


async def test_an_expired_key_is_never_returned(store: RedisStore) -> None:
    sid = "e" * 43
    assert await store.set(sid, b"record", 100, None)
    await client_of(store).pexpire(store.key(sid), 1)
    await asyncio.sleep(0.01)
    assert await store.get(sid, None) is None
    assert await store.get(sid, 100) is None
    assert await store.set(sid, b"new", 100, None), "an expired record no longer blocks a new one"


# --- round trips, counted on the server -----------------------------------------------------


def watch(store: RedisStore, redis_url: str) -> AbstractAsyncContextManager[ServerCommands]:
    return server_commands(redis_url, store.prefix)


@pytest.mark.parametrize(("ttl", "read"), [(100, "GETEX"), (None, "GET")])
async def test_one_command_per_store_call(standalone: RedisStore, ttl: int | None, read: str, redis_url: str) -> None:
    async with (
        app_client(standalone, expire_after_seconds=ttl) as client,
        watch(standalone, redis_url) as seen,
    ):
        await client.post("/set", json={"user": "ann"})  # also makes sure Redis has the script cached
        first = await seen.since_last()
        assert first in (["EVALSHA"], ["EVALSHA", "EVAL"]), first

        await client.get("/read/user")
        assert await seen.since_last() == [read], "a handler that only reads: one read"

        await client.post("/set", json={"user": "bob"})
        assert await seen.since_last() == [read, "EVALSHA"], "a handler that changes: one read, one write"

        await client.get("/plain")
        assert await seen.since_last() == [], "a handler without the session: nothing"

        await client.post("/rotate")
        assert await seen.since_last() == [read, "EVALSHA", "EVALSHA"], "a rotation: the new id, then the old one moved"

        await client.post("/logout")
        assert await seen.since_last() == [read, "EVALSHA"], "a logout: one read, one compare-and-set to a tombstone"

        await client.get("/read/user")
        assert await seen.since_last() == [], "no cookie any more: nothing to read"


async def test_a_new_session_is_one_write_and_an_empty_one_nothing(standalone: RedisStore, redis_url: str) -> None:
    async with (
        app_client(standalone, expire_after_seconds=100) as client,
        watch(standalone, redis_url) as seen,
    ):
        await client.post("/set", json={"warm": "up"})
        await seen.since_last()
        client.cookies.clear()
        await client.get("/read/user")
        assert await seen.since_last() == []
        await client.post("/set", json={"user": "ann"})
        assert await seen.since_last() == ["EVALSHA"]


async def test_a_server_without_the_script_gets_it_once(tmp_path: Path) -> None:
    # A Redis of the test's own: the test flushes its script cache.
    async with private_redis(tmp_path) as url, open_redis_store(url) as store:
        async with server_commands(url, store.prefix) as seen:
            await client_of(store).script_flush()
            assert await store.set("n" * 43, b"one", TTL, None)
            assert await seen.since_last() == ["EVALSHA", "EVAL"], "NOSCRIPT, then EVAL, which caches it"
            assert await store.set("n" * 43, b"two", TTL, b"one")
            assert await seen.since_last() == ["EVALSHA"]
        assert await store.get("n" * 43, None) == b"two"


# --- Redis Cluster --------------------------------------------------------------------------


async def test_sessions_spread_over_cluster_nodes_and_all_work(redis_cluster_url: str) -> None:
    async with open_redis_store(redis_cluster_url, cluster=True, prefix=unique_prefix()) as store:
        cluster = client_of(store)
        assert isinstance(cluster, RedisCluster)
        sessions: dict[str, str] = {}
        for n in range(24):
            async with app_client(store, expire_after_seconds=100) as client:
                await client.post("/set", json={"user": f"user-{n}"})
                sessions[await session_id(client)] = client.cookies["session"]

        keys_per_node: dict[str, set[str]] = {}
        for node in cluster.get_primaries():
            async with Redis(host=node.host, port=int(node.port)) as direct:
                found = {key.decode() async for key in direct.scan_iter(match=f"{store.prefix}*")}
                keys_per_node[node.name] = found
                for key in found:
                    assert 90 <= await direct.ttl(key) <= 100
        assert sum(len(keys) for keys in keys_per_node.values()) == len(sessions)
        assert set().union(*keys_per_node.values()) == {store.key(store_key(sid)) for sid in sessions}
        assert sum(1 for keys in keys_per_node.values() if keys) >= 2, keys_per_node

        async with app_client(store, expire_after_seconds=100) as client:
            for n, cookie in enumerate(sessions.values()):
                client.cookies.set("session", cookie, domain="testserver.local")
                assert (await client.get("/read/user")).json()["value"] == f"user-{n}"
                response = await client.post("/set", json={"user": f"changed-{n}"})
                assert response.status_code == 200
                assert (await client.get("/read/user")).json()["value"] == f"changed-{n}"


# --- faults ---------------------------------------------------------------------------------


def redis_address(redis_url: str) -> tuple[str, int]:
    url = urlsplit(redis_url)
    return url.hostname or "127.0.0.1", url.port or 6379


@pytest.mark.parametrize("fault", ["down", "hang"])
async def test_unreachable_redis_gives_503_then_recovers(
    session_log: RecordingHandler, fault: str, redis_url: str
) -> None:
    async with fault_proxy(*redis_address(redis_url)) as proxy:
        url = f"redis://127.0.0.1:{proxy.port}/0"
        async with open_redis_store(url, timeout=0.5) as store, app_client(store, expire_after_seconds=100) as client:
            await client.post("/set", json={"user": "ann"})
            sid = await session_id(client)

            getattr(proxy, fault)()
            await assert_session_requests_fail_fast(client, session_log, "RedisStore")

            proxy.up()
            async with Redis.from_url(redis_url) as direct:
                assert await direct.exists(store.key(store_key(sid))) == 1, "the failed logout deleted nothing"
            assert (await client.get("/read/user")).json()["value"] == "ann", "the failed write wrote nothing"
            assert (await client.post("/set", json={"user": "bob"})).status_code == 200
            assert (await client.get("/read/user")).json()["value"] == "bob"


@pytest.mark.parametrize("ttl", [100, None])
@pytest.mark.parametrize("fault", FAULTS)
async def test_a_redis_that_refuses_commands_gives_503_then_recovers(
    tmp_path: Path, session_log: RecordingHandler, fault: str, ttl: int | None
) -> None:
    """Out of memory, a read-only replica after a failover, a replica cut off from its master, a
    script running too long: Redis is up but answers an error that means "not now". Every
    session request answers 503 (never a 500), changes nothing, and the app works again after."""
    async with (
        private_redis(tmp_path) as url,
        open_redis_store(url, timeout=0.5) as store,
        app_client(store, expire_after_seconds=ttl) as client,
    ):
        await client.post("/set", json={"user": "ann"})
        before = await records_under(url, store.prefix)
        async with redis_fault(url, fault):
            await assert_every_change_answers_503(client, fault)
            assert "RedisStore" in session_log.text
            assert any(name in session_log.text for name in LOGGED[fault]), session_log.text
            read = await client.get("/read/user")
            # Only a write is refused when out of memory; a replica refuses GETEX (a sliding
            # read writes the expiry) but serves GET; MASTERDOWN and BUSY refuse everything.
            readable = fault == "oom" or (fault == "readonly" and ttl is None)
            assert read.status_code == (200 if readable else 503), read.text
        assert not [record for record in session_log.records if record.exc_info], "no 500 with a traceback"
        assert await records_under(url, store.prefix) == before, "nothing was written or deleted"
        assert (await client.get("/read/user")).json()["value"] == "ann"
        assert (await client.post("/set", json={"user": "bob"})).status_code == 200
        assert (await client.get("/read/user")).json()["value"] == "bob"


LOGGED = {
    "oom": ("OutOfMemoryError",),
    "readonly": ("ReadOnlyError",),
    # A sliding read's GETEX is a write, which a replica refuses as READONLY before MASTERDOWN.
    "masterdown": ("MasterDownError", "ReadOnlyError"),
    "busy": ("BUSY",),  # redis-py has no class for it: a plain ResponseError, which the store reads the code of
}
"""What the 503's log line names: redis-py's exception class, or the error code."""


async def test_redis_down_at_start_up_then_up_without_a_restart(tmp_path: Path, session_log: RecordingHandler) -> None:
    """RedisStore has nothing to set up: the app starts (without a warning) while Redis is down,
    answers 503, and works as soon as a Redis listens on the port."""
    port = free_port()
    store = RedisStore.from_url(f"redis://127.0.0.1:{port}/0", prefix=unique_prefix(), timeout=0.5)
    # The app starts, and answers 503 while down, before the Redis starts on its port.
    async with (
        app_started_while_down(store, session_log, "RedisStore", warned=False) as client,
        private_redis(tmp_path, port),
    ):
        await assert_serves_again(client)


async def test_a_cluster_down_at_start_up_then_up_without_a_restart(
    session_log: RecordingHandler, redis_cluster_url: str
) -> None:
    """A cluster client learns the cluster's nodes at start-up: while the startup node is down
    the app starts with a warning, and the client learns them at the first command that reaches
    it. (The startup node appears on its port when a proxy to a node of the test cluster starts
    listening there.)"""
    url = urlsplit(redis_cluster_url)
    port = free_port()
    store = RedisStore.from_url(f"redis://127.0.0.1:{port}/0", prefix=unique_prefix(), cluster=True, timeout=0.5)
    try:
        async with (
            app_started_while_down(store, session_log, "RedisStore", warned=True) as client,
            fault_proxy(url.hostname or "127.0.0.1", url.port or 6379, listen_port=port),
        ):
            await assert_serves_again(client)
    finally:
        async with connect(redis_cluster_url, cluster=True) as cleanup:
            await delete_keys(cleanup, store.prefix)


@pytest.mark.parametrize(
    "message",
    [
        "BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE.",
        "NOREPLICAS Not enough good replicas to write.",
        "OOM command not allowed when used memory > 'maxmemory'.",  # a redis-py without OutOfMemoryError
        "READONLY You can't write against a read only replica.",
        "LOADING Redis is loading the dataset in memory",
        "MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'.",
        "TRYAGAIN Multiple keys request during rehashing of slot",
        "CLUSTERDOWN The cluster is down",
        # Redis before 7 wraps what a script's redis.call() met:
        "Error running script (call to f_0123abcd): @user_script:12: OOM command not allowed when used memory",
    ],
)
async def test_error_replies_that_mean_not_now_are_unavailable(message: str) -> None:
    """Error codes redis-py raises as a plain ``ResponseError`` (BUSY and NOREPLICAS always, the
    others in older redis-py versions) still mean 503."""

    async def refused() -> None:
        raise redis.ResponseError(message)

    with pytest.raises(StoreUnavailableError, match="RedisStore"):
        await RedisStore(Redis())._guard(refused())


@pytest.mark.parametrize(
    "error",
    [
        redis.ResponseError("BUSYKEY Target key name already exists."),
        redis.ResponseError("WRONGTYPE Operation against a key holding the wrong kind of value"),
        redis.exceptions.NoScriptError("No matching script. Please use EVAL.", status_code="NOSCRIPT"),
        redis.exceptions.NoPermissionError("this user has no permissions to run the 'evalsha' command"),
    ],
    ids=["BUSYKEY", "WRONGTYPE", "NOSCRIPT", "NOPERM"],
)
async def test_other_error_replies_stay_errors(error: redis.ResponseError) -> None:
    async def refused() -> None:
        raise error

    with pytest.raises(type(error)):
        await RedisStore(Redis())._guard(refused())


async def test_arguments_redis_echoes_never_reach_the_log(tmp_path: Path, session_log: RecordingHandler) -> None:
    """A Redis whose EVALSHA is renamed away answers ``ERR unknown command 'EVALSHA', with args
    beginning with: ...``, the key and the record among them: the error keeps its class (a
    misconfiguration is a 500) but loses the arguments."""
    async with (
        private_redis(tmp_path, None, "--rename-command", "EVALSHA", "") as url,
        open_redis_store(url) as store,
    ):
        with pytest.raises(redis.ResponseError, match="unknown command") as raised:
            await store.set("k" * 43, b"secret-record", TTL, None)
        assert "k" * 43 not in str(raised.value)
        assert "secret-record" not in str(raised.value)
        app = build_app(SessionConfig(store=store))
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)  # type: ignore[arg-type]
        async with app.lifespan(), httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            response = await client.post("/set", json={"user": "secret-value"})
            assert response.status_code == 500, "a misconfiguration is not an outage"
        logged = "\n".join(
            [
                session_log.text,
                *(logging.Formatter().formatException(r.exc_info) for r in session_log.records if r.exc_info),
            ]
        )
        assert "unknown command" in logged
        assert "secret-value" not in logged
        assert store.prefix not in logged, "no key"


# --- configuration --------------------------------------------------------------------------


@pytest.mark.parametrize("prefix", ["", "has space", "a/b", "a*", "{tag}", "é", "x" * 101, "a\nb"])
def test_invalid_prefix_is_refused(prefix: str) -> None:
    with pytest.raises(ValueError, match="prefix"):
        RedisStore(Redis(), prefix)


@pytest.mark.parametrize("prefix", ["app:session:", "sess.v2-", "S_1"])
def test_usual_prefixes_are_accepted(prefix: str) -> None:
    assert RedisStore(Redis(), prefix).prefix == prefix


def test_a_decoding_client_is_refused() -> None:
    with pytest.raises(ValueError, match="decode_responses=False"):
        RedisStore(Redis(decode_responses=True))
    with pytest.raises(ValueError, match="decode_responses=False"):
        RedisStore(RedisCluster(host="127.0.0.1", port=1, decode_responses=True))


def test_a_sync_client_is_refused() -> None:
    with pytest.raises(TypeError, match=r"redis\.asyncio"):
        RedisStore(redis.Redis())  # type: ignore[arg-type]


# --- who closes the client -------------------------------------------------------------------


async def connections_named(url: str, name: str, *, cluster: bool) -> int:
    """How many connections the Redis at ``url`` (on a cluster: all its primaries) has open under ``name``."""
    if not cluster:
        async with Redis.from_url(url) as control:
            return sum(client["name"] == name for client in await control.client_list())
    count = 0
    async with RedisCluster.from_url(url) as control:
        for node in control.get_primaries():
            async with Redis(host=node.host, port=int(node.port)) as direct:
                count += sum(client["name"] == name for client in await direct.client_list())
    return count


@pytest.mark.parametrize("cluster", [False, True], ids=["standalone", "cluster"])
async def test_a_store_from_a_url_closes_its_client_when_the_app_stops(
    cluster: bool, request: pytest.FixtureRequest
) -> None:
    url = request.getfixturevalue("redis_cluster_url" if cluster else "redis_url")
    name = f"lfs-owned-{uuid.uuid4().hex}"
    store = RedisStore.from_url(url, prefix=unique_prefix(), cluster=cluster, client_name=name)
    assert isinstance(client_of(store), RedisCluster if cluster else Redis)
    try:
        async with store.lifespan():
            assert await store.set("o" * 43, b"record", TTL, None)
            assert await store.get("o" * 43, None) == b"record"
            assert await connections_named(url, name, cluster=cluster) >= 1, "the client options were applied"

        async def all_closed() -> bool:
            return await connections_named(url, name, cluster=cluster) == 0

        await wait_until(all_closed)
        assert await all_closed(), "the store closed the client it made"
    finally:
        async with connect(url, cluster=cluster) as cleanup:
            await delete_keys(cleanup, store.prefix)


async def test_a_client_passed_in_stays_usable_after_the_app_stops(redis_url: str) -> None:
    url, name = redis_url, f"lfs-given-{uuid.uuid4().hex}"
    async with Redis.from_url(url, client_name=name) as client:
        store = RedisStore(client, unique_prefix())
        async with store.lifespan():
            assert await store.set("g" * 43, b"record", TTL, None)
            assert await connections_named(url, name, cluster=False) >= 1

        async def all_closed() -> bool:
            return await connections_named(url, name, cluster=False) == 0

        # Not closed, but its idle connections of the app's loop let go: an app started later on
        # another loop (the next TestClient) must not find them.
        await wait_until(all_closed)
        assert await all_closed(), "the idle connections the app opened were disconnected"
        assert await client.get(store.key("g" * 43)) == b"record", "and the client still works: it reconnects"
        await delete_keys(client, store.prefix)


async def delete_and_close(client: Redis | RedisCluster, prefix: str) -> None:
    await delete_keys(client, prefix)
    await client.aclose()


@pytest.mark.parametrize("cluster", [False, True], ids=["standalone", "cluster"])
def test_a_client_made_before_the_app_serves_test_clients_one_after_another(
    cluster: bool, request: pytest.FixtureRequest
) -> None:
    url = request.getfixturevalue("redis_cluster_url" if cluster else "redis_url")
    client = connect(url, cluster=cluster)  # as at import time: on no event loop yet
    store = RedisStore(client, unique_prefix())
    app = build_app(SessionConfig(store=store))
    try:
        for visit in range(3):  # each TestClient runs the app on an event loop of its own, closed after
            with TestClient(app) as http:
                assert http.post("/set", json={"visit": visit}).status_code == 200
                assert http.get("/read/visit").json()["value"] == visit
                assert http.post("/set", json={"again": True}).status_code == 200, "the session is written again"
    finally:
        asyncio.run(delete_and_close(client, store.prefix))


@pytest.mark.parametrize("cluster", [False, True], ids=["standalone", "cluster"])
def test_a_client_used_on_another_loop_fails_the_start_saying_what_to_do(
    cluster: bool, request: pytest.FixtureRequest
) -> None:
    url = request.getfixturevalue("redis_cluster_url" if cluster else "redis_url")
    client = connect(url, cluster=cluster)
    store = RedisStore(client, unique_prefix())
    app = build_app(SessionConfig(store=store))
    other = asyncio.new_event_loop()
    try:
        other.run_until_complete(client.ping())  # leaves an idle connection of that loop in the pool
        with pytest.raises(BaseExceptionGroup) as failed, TestClient(app):
            pass
        assert failed.group_contains(RuntimeError, match=r"another event loop than the app's.*RedisStore\.from_url")
    finally:
        other.run_until_complete(delete_and_close(client, store.prefix))
        other.close()


def test_a_decoding_client_from_a_url_is_refused() -> None:
    with pytest.raises(ValueError, match="decode_responses=False"):
        RedisStore.from_url("redis://127.0.0.1:1/0", decode_responses=True)


@pytest.mark.parametrize(
    ("cluster", "trials", "burst"), [(False, 1, 150), (True, 15, 40)], ids=["standalone", "cluster"]
)
async def test_a_burst_of_new_sessions_on_an_app_just_started_is_served_whole(
    request: pytest.FixtureRequest, cluster: bool, trials: int, burst: int
) -> None:
    # More concurrent requests than the client's pool has connections (redis-py's default: 100),
    # or the first requests of an app just started (a cluster client that has not learnt the
    # layout: some of them failed, a race, hence the trials): every one is served and stored,
    # none answers 503 ("Too many connections") or 500.
    url = request.getfixturevalue("redis_cluster_url" if cluster else "redis_url")
    for _ in range(trials):
        store = RedisStore.from_url(url, prefix=unique_prefix(), cluster=cluster)
        app = build_app(SessionConfig(store=store))
        async with app.lifespan():
            transport = httpx.ASGITransport(app=app)
            browsers = [
                httpx.AsyncClient(transport=transport, base_url="http://testserver.local") for _ in range(burst)
            ]
            try:
                responses = await asyncio.gather(*(b.post("/set", json={"n": i}) for i, b in enumerate(browsers)))
                assert [response.status_code for response in responses] == [200] * burst
                for i, browser in enumerate(browsers):
                    assert (await browser.get("/read/n")).json()["value"] == i
            finally:
                for browser in browsers:
                    await browser.aclose()
                await delete_keys(store._client, store.prefix)


async def test_a_command_that_times_out_waiting_for_a_connection_is_a_503_without_a_warning(
    recwarn: pytest.WarningsRecorder,
) -> None:
    store = RedisStore(Redis.from_url("redis://127.0.0.1:1/0", max_connections=1), timeout=0.2)
    assert store._slots is not None
    await store._slots.acquire()  # the pool's one connection is another request's
    refused = False
    try:
        await store.get("x" * 43, None)
    except StoreUnavailableError:
        refused = True  # (the exception and its frames, which hold the command, go here)
    assert refused
    await asyncio.sleep(0.01)  # the cancelled wait's callbacks run
    gc.collect()
    assert not [w for w in recwarn if "never awaited" in str(w.message)]
