"""What is specific to WebdisStore: binary-safe values, keys and TTLs in the Redis behind Webdis,
one HTTP request per store call, status codes, and a Webdis (or a Redis) that goes away or hangs.

Round trips are counted twice: HTTP requests with httpx event hooks on the store's client, and
the commands Webdis runs on Redis with ``MONITOR`` (``tests.harness_redis.server_commands``).
The Redis behind the shared Webdis is the ``redis_url`` one (tests/servers.py).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import quote, urlsplit

import httpx
import pytest
from redis.asyncio import Redis

from litestar_flash_sessions import SessionConfig, StoreUnavailableError
from litestar_flash_sessions.commit import store_key
from litestar_flash_sessions.stores.webdis import WebdisError, WebdisStore, _bulk_string
from tests import servers
from tests.app import build_app
from tests.conftest import RecordingHandler, app_client, session_id
from tests.faults import (
    FaultProxy,
    app_started_while_down,
    assert_every_change_answers_503,
    assert_serves_again,
    assert_session_requests_fail_fast,
    fault_proxy,
    free_port,
)
from tests.harness_redis import FAULT_ERRORS, FAULTS, private_redis, records_under, redis_fault, server_commands
from tests.harness_webdis import delete_keys, open_webdis_store, unique_prefix

TTL = 100


@pytest.fixture
async def store(webdis_url: str) -> AsyncIterator[WebdisStore]:
    async with open_webdis_store(webdis_url) as opened:
        yield opened


@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[Redis]:
    """A direct connection to the Redis behind Webdis."""
    async with Redis.from_url(redis_url) as client:
        yield client


def address(url: str, default_port: int) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or default_port


# --- binary safety --------------------------------------------------------------------------

AWKWARD = ["a/b", "../x", "a.b.raw", "100%", "%2F", "nul\x00byte", "é ü 中文 🙂", "\r\n$-1\r\n", "+-:*$", "?q=1#f"]


async def test_awkward_values_round_trip_through_a_session(store: WebdisStore) -> None:
    values = {f"k{n}": value for n, value in enumerate(AWKWARD)}
    values["big"] = "".join(AWKWARD) * (100_000 // len("".join(AWKWARD)))
    async with app_client(store, expire_after_seconds=TTL, max_size_bytes=200_000) as client:
        assert (await client.post("/set", json=values)).status_code == 200
        for key, value in values.items():
            assert (await client.get(f"/read/{key}")).json()["value"] == value


@pytest.mark.parametrize("prefix", ["lfs.test.", "lfs:test:", "lfs-test_"])
async def test_any_bytes_round_trip_byte_exact(redis_client: Redis, prefix: str, webdis_url: str) -> None:
    record = bytes(range(256)) * 400 + b"/.%\x00" + "é".encode()  # about 100 KB, every byte value
    async with open_webdis_store(webdis_url, prefix=f"{prefix}{time.time_ns()}.") as store:
        sid = "x" * 43
        assert await store.set(sid, record, TTL, None)
        assert await redis_client.get(store.key(sid)) == record, "what Redis holds is the exact bytes"
        assert await store.get(sid, None) == record
        assert await store.get(sid, TTL) == record
        assert await store.set(sid, b"\x00", TTL, record)
        assert await store.get(sid, None) == b"\x00"
        assert await store.set(sid, b"", TTL, b"\x00"), "Webdis drops an empty body: the script copes"
        assert await store.get(sid, None) == b""


# --- keys and TTLs in the Redis behind Webdis -----------------------------------------------


async def test_record_lives_under_prefix_and_id_with_its_ttl(store: WebdisStore, redis_client: Redis) -> None:
    async with app_client(store, expire_after_seconds=TTL) as client:
        await client.post("/set", json={"user": "ann"})
        key = store.key(store_key(await session_id(client)))
        assert await redis_client.get(key) == await store.get(key.removeprefix(store.prefix), None)
        assert 95_000 <= await redis_client.pttl(key) <= 100_000


async def test_a_read_slides_the_ttl_without_rewriting(store: WebdisStore, redis_client: Redis) -> None:
    async with app_client(store, expire_after_seconds=TTL) as client:
        await client.post("/set", json={"user": "ann"})
        key = store.key(store_key(await session_id(client)))
        before = await redis_client.get(key)
        await redis_client.expire(key, 10)  # as if 90 s had passed
        assert (await client.get("/read/user")).json()["value"] == "ann"
        assert 95_000 <= await redis_client.pttl(key) <= 100_000
        assert await redis_client.get(key) == before


async def test_no_ttl_without_expiry(store: WebdisStore, redis_client: Redis) -> None:
    async with app_client(store, expire_after_seconds=None) as client:
        await client.post("/set", json={"user": "ann"})
        key = store.key(store_key(await session_id(client)))
        assert await redis_client.ttl(key) == -1
        assert (await client.get("/read/user")).json()["value"] == "ann"
        assert await redis_client.ttl(key) == -1
    sid = "t" * 43
    assert await store.set(sid, b"one", TTL, None)
    assert await store.set(sid, b"two", None, b"one")
    assert await redis_client.ttl(store.key(sid)) == -1, "a write without expiry drops the old TTL"


async def test_an_expired_key_is_never_returned(store: WebdisStore, redis_client: Redis) -> None:
    sid = "e" * 43
    assert await store.set(sid, b"record", TTL, None)
    await redis_client.pexpire(store.key(sid), 1)
    await asyncio.sleep(0.01)
    assert await store.get(sid, None) is None
    assert await store.get(sid, TTL) is None
    assert await store.set(sid, b"new", TTL, None)


# --- round trips ----------------------------------------------------------------------------


class Requests:
    """The HTTP requests a client sends, seen through its event hooks."""

    def __init__(self) -> None:
        self.count = 0

    async def __call__(self, request: httpx.Request) -> None:
        self.count += 1

    def since_last(self) -> int:
        count, self.count = self.count, 0
        return count


@pytest.mark.parametrize(("ttl", "read"), [(TTL, "GETEX"), (None, "GET")])
async def test_one_request_per_store_call(ttl: int | None, read: str, webdis_url: str, redis_url: str) -> None:
    requests = Requests()
    async with (
        httpx.AsyncClient(event_hooks={"request": [requests]}, timeout=5) as http,
        open_webdis_store(webdis_url, client=http) as store,
        server_commands(redis_url, store.prefix) as redis_commands,
        app_client(store, expire_after_seconds=ttl) as client,
    ):

        async def seen() -> tuple[int, list[str]]:
            """HTTP requests to Webdis, and what they ran in Redis: one EVAL each, and inside it."""
            commands = await redis_commands.since_last(scripts=True)
            in_scripts = [name.removeprefix("lua:") for name in commands if name.startswith("lua:")]
            evals = [name for name in commands if not name.startswith("lua:")]
            http_requests = requests.since_last()
            assert evals == ["EVAL"] * http_requests, "each HTTP request is one Redis command"
            return http_requests, in_scripts

        await client.post("/set", json={"user": "ann"})
        assert await seen() == (1, ["GET", "SET"]), "a new session: one write"

        await client.get("/read/user")
        assert await seen() == (1, [read]), "a handler that only reads: one request"

        await client.post("/set", json={"user": "bob"})
        assert await seen() == (2, [read, "GET", "SET"]), "a handler that changes: one read, one write"

        await client.get("/plain")
        assert await seen() == (0, []), "a handler without the session: nothing"

        await client.post("/rotate")
        assert await seen() == (3, [read, "GET", "SET", "GET", "SET"]), "a rotation: the new id, then the old one moved"

        await client.post("/logout")
        assert await seen() == (2, [read, "GET", "SET"]), "a logout: one read, one compare-and-set to a tombstone"

        await client.get("/read/user")
        assert await seen() == (0, []), "no cookie any more: nothing to read"


# --- faults ---------------------------------------------------------------------------------


@asynccontextmanager
async def private_webdis(
    tmp_path: Path, redis_port: int, disabled: list[str], port: int | None = None
) -> AsyncIterator[str]:
    """A Webdis of this test's own, on ``port`` (by default a free one), in front of
    ``redis_port``: the test can cut its Redis without touching the shared servers."""
    webdis = servers.webdis_process(
        tmp_path, redis_port, disabled, free_port() if port is None else port, threads=1, pool_size=2
    )
    async with servers.off_the_loop("a throwaway Webdis", webdis) as url:
        yield url


async def exercise_outage(
    proxy: FaultProxy, fault: str, store: WebdisStore, redis_client: Redis, log: RecordingHandler
) -> None:
    """Break ``proxy`` while a session exists; every session request must give a 503 and change
    nothing; after ``up()`` the same app works again."""
    async with app_client(store, expire_after_seconds=TTL) as client:
        await client.post("/set", json={"user": "ann"})
        key = store.key(store_key(await session_id(client)))
        before = await redis_client.get(key)

        getattr(proxy, fault)()
        await assert_session_requests_fail_fast(client, log, "WebdisStore")
        assert await redis_client.get(key) == before, "nothing was written or deleted"

        proxy.up()
        # The requests held by a hung proxy now reach Webdis from clients that are gone: Webdis
        # may hand their replies to the next connections (see the crossed-reply test below),
        # which the store refuses with a 503. Let them drain first.
        await asyncio.sleep(0.2)
        for _ in range(50):  # Webdis reconnects to Redis by itself, within a few hundred ms
            response = await client.get("/read/user")
            if response.status_code != 503:
                break
            await asyncio.sleep(0.05)
        assert response.json()["value"] == "ann"
        assert (await client.post("/set", json={"user": "bob"})).status_code == 200
        assert (await client.get("/read/user")).json()["value"] == "bob"


@pytest.mark.parametrize("fault", ["down", "hang"])
async def test_unreachable_webdis_gives_503_then_recovers(
    tmp_path: Path, redis_client: Redis, session_log: RecordingHandler, fault: str, redis_url: str
) -> None:
    # A Webdis of the test's own: cutting requests mid-command makes Webdis misdeliver replies,
    # which must not disturb other tests using the shared one.
    async with (
        private_webdis(tmp_path, address(redis_url, 6379)[1], ["DEBUG"]) as url,
        fault_proxy(*address(url, 7379)) as proxy,
        open_webdis_store(f"http://127.0.0.1:{proxy.port}", timeout=0.5, cleanup_url=url) as store,
    ):
        await exercise_outage(proxy, fault, store, redis_client, session_log)


async def test_webdis_503_when_its_redis_is_unreachable(
    tmp_path: Path, redis_client: Redis, session_log: RecordingHandler, redis_url: str, webdis_url: str
) -> None:
    async with (
        fault_proxy(*address(redis_url, 6379)) as redis_proxy,
        private_webdis(tmp_path, redis_proxy.port, ["DEBUG"]) as url,
        open_webdis_store(url, timeout=0.5, cleanup_url=webdis_url) as store,
    ):
        redis_proxy.down()
        with pytest.raises(StoreUnavailableError, match="Webdis answered 503"):
            await store.get("x" * 43, None)
        redis_proxy.up()
        await asyncio.sleep(0.5)  # let Webdis reconnect before the app's first request
        await exercise_outage(redis_proxy, "down", store, redis_client, session_log)


async def vanish(port: int, path: str) -> None:
    """Send a request to Webdis and disconnect (RST) before its reply, as a timed-out client does."""
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: webdis\r\n\r\n".encode())
    await writer.drain()
    writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


async def test_a_reply_meant_for_another_request_is_never_taken(
    tmp_path: Path, redis_url: str, webdis_url: str
) -> None:
    # Webdis 0.1.9 may hand the reply of a client that disconnected mid-command to the next
    # connection it accepts. Here other clients keep reading another session and vanishing,
    # while the store reads its own session on a fresh connection each time: the store must
    # never return the other session's record (a 503 is fine).
    prefix = unique_prefix()
    foreign_path = f"/GET/{quote(prefix + 'f' * 43, safe='')}.raw"
    no_keep_alive = httpx.Limits(max_keepalive_connections=0)
    async with (
        private_webdis(tmp_path, address(redis_url, 6379)[1], ["DEBUG"]) as url,
        httpx.AsyncClient(limits=no_keep_alive, timeout=0.2) as http,
    ):
        store = WebdisStore(url, prefix, client=http, timeout=0.2)
        port = urlsplit(url).port or 7379
        try:
            assert await store.set("o" * 43, b"own record", TTL, None)
            assert await store.set("f" * 43, b"foreign record", TTL, None)
            refused, quoted = 0, False
            for _ in range(3000):
                if refused == 3:
                    break
                await vanish(port, foreign_path)
                try:
                    record = await store.get("o" * 43, None)
                except StoreUnavailableError as error:
                    # Either a reply that is not ours, or none at all: ours went to someone else.
                    refused += "not this request's" in str(error)
                    quoted = quoted or "foreign" in str(error)
                else:
                    assert record == b"own record"
        finally:
            await delete_keys(webdis_url, prefix)
    assert not quoted, "the error (so the log line) never quotes another request's reply"
    if refused == 0:
        pytest.skip("this Webdis crossed no reply in 3000 tries: the guard was not exercised")


async def test_a_refused_command_is_an_error_not_an_outage(tmp_path: Path, redis_url: str) -> None:
    async with private_webdis(tmp_path, address(redis_url, 6379)[1], ["DEBUG", "EVAL"]) as url:
        store = WebdisStore(url, unique_prefix())  # writes nothing: no keys to clean up
        try:
            with pytest.raises(WebdisError, match="403"):
                await store.get("x" * 43, TTL)
            with pytest.raises(WebdisError, match="403"):
                await store.set("x" * 43, b"record", TTL, None)
            app = build_app(SessionConfig(store=store, expire_after_seconds=TTL))
            # As an ASGI server does, answer 500 when the app raises before its response starts.
            transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)  # type: ignore[arg-type]
            async with app.lifespan(), httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                response = await client.post("/set", json={"user": "ann"})
                assert response.status_code == 500, "a misconfiguration is not an outage"
        finally:
            await store.shutdown()


@pytest.mark.parametrize("fault", FAULTS)
async def test_a_redis_that_refuses_commands_gives_503_then_recovers(
    tmp_path: Path, session_log: RecordingHandler, fault: str
) -> None:
    """Webdis in front of a Redis that is out of memory, a read-only replica (after a failover),
    cut off from its master, or busy with a script: Webdis passes Redis's error reply on, and
    every session request answers 503 (never a 500), changes nothing, and works again after."""
    async with (
        private_redis(tmp_path) as redis_url,
        private_webdis(tmp_path, address(redis_url, 6379)[1], ["DEBUG"]) as url,
        open_webdis_store(url, timeout=0.5) as store,
        app_client(store, expire_after_seconds=TTL) as client,
    ):
        await client.post("/set", json={"user": "ann"})
        before = await records_under(redis_url, store.prefix)
        async with redis_fault(redis_url, fault):
            await assert_every_change_answers_503(client, fault)
            assert "WebdisStore" in session_log.text
            assert "Redis answered" in session_log.text
            assert FAULT_ERRORS[fault] in session_log.text, session_log.text
            read = await client.get("/read/user")
            assert read.status_code == (200 if fault == "oom" else 503), "only writes need memory"
        assert not [record for record in session_log.records if record.exc_info], "no 500 with a traceback"
        assert await records_under(redis_url, store.prefix) == before, "nothing was written or deleted"
        assert (await client.get("/read/user")).json()["value"] == "ann"
        assert (await client.post("/set", json={"user": "bob"})).status_code == 200
        assert (await client.get("/read/user")).json()["value"] == "bob"


async def test_webdis_down_at_start_up_then_up_without_a_restart(
    tmp_path: Path, session_log: RecordingHandler, redis_url: str, webdis_url: str
) -> None:
    """WebdisStore has nothing to set up on the server: the app starts (without a warning) while
    nothing listens at its URL, answers 503, and works once a Webdis starts there."""
    port = free_port()
    store = WebdisStore(f"http://127.0.0.1:{port}", unique_prefix(), timeout=0.5)
    try:
        redis_port = address(redis_url, 6379)[1]
        # The app starts, and answers 503 while down, before the Webdis starts on its port.
        async with (
            app_started_while_down(store, session_log, "WebdisStore", warned=False) as client,
            private_webdis(tmp_path, redis_port, ["DEBUG"], port),
        ):
            await assert_serves_again(client)
    finally:
        await delete_keys(webdis_url, store.prefix)


@pytest.mark.parametrize(
    ("reply", "unavailable"),
    [
        (b"-OOM command not allowed when used memory > 'maxmemory'. script: 1f, on @user_script:12.\r\n", True),
        (b"-READONLY You can't write against a read only replica.\r\n", True),
        (b"-NOREPLICAS Not enough good replicas to write.\r\n", True),
        (b"-LOADING Redis is loading the dataset in memory\r\n", True),
        (b"-ERR Error running script (call to f_1f): @user_script:12: OOM command not allowed\r\n", True),
        (b"-BUSYKEY Target key name already exists.\r\n", False),
        (b"-ERR Error running script (call to f_1f): @user_script:3: user_script:3: bad argument\r\n", False),
    ],
)
def test_error_replies_that_mean_not_now_are_unavailable(reply: bytes, unavailable: bool) -> None:
    with pytest.raises(StoreUnavailableError if unavailable else WebdisError):
        _bulk_string(reply)


async def test_arguments_redis_echoes_never_reach_the_log(tmp_path: Path, session_log: RecordingHandler) -> None:
    """A Redis without EVAL answers ``ERR unknown command 'EVAL', with args beginning with: ...``,
    the key among them: the WebdisError (a misconfiguration: a 500) leaves the arguments out."""
    async with (
        private_redis(tmp_path, None, "--rename-command", "EVAL", "") as redis_url,
        private_webdis(tmp_path, address(redis_url, 6379)[1], ["DEBUG"]) as url,
    ):
        store = WebdisStore(url, unique_prefix())  # writes nothing: the Redis is thrown away anyway
        try:
            with pytest.raises(WebdisError, match="unknown command") as raised:
                await store.get("k" * 43, None)
            assert store.prefix not in str(raised.value), "no key"
            app = build_app(SessionConfig(store=store))
            transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)  # type: ignore[arg-type]
            async with app.lifespan(), httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                assert (await client.post("/set", json={"user": "ann"})).status_code == 500
        finally:
            await store.shutdown()
    formatter = logging.Formatter()
    logged = "\n".join(
        [session_log.text, *(formatter.formatException(r.exc_info) for r in session_log.records if r.exc_info)]
    )
    assert "unknown command" in logged
    assert store.prefix not in logged, "no key"


async def test_a_reply_that_is_not_ours_is_never_quoted() -> None:
    """The error (and so the log line) says how long the foreign reply was, never what it held."""
    payload = b"someone else's record\x00\xff!"
    foreign = b"$%d\r\n%s\r\n" % (len(payload), payload)  # well framed, but without this request's tag

    def webdis(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=foreign)

    async with httpx.AsyncClient(transport=httpx.MockTransport(webdis)) as http:
        store = WebdisStore("http://webdis.invalid", unique_prefix(), client=http)
        with pytest.raises(StoreUnavailableError, match="not this request's") as raised:
            await store.get("k" * 43, None)
    assert "record" not in str(raised.value)
    assert str(len(foreign)) in str(raised.value)


async def test_a_refused_status_is_not_quoted() -> None:
    """A non-200 answer's body may be a reply meant for another request: only its length is said."""

    def webdis(request: httpx.Request) -> httpx.Response:
        return httpx.Response(403, content=b"$15\r\nanother record!\r\n")

    async with httpx.AsyncClient(transport=httpx.MockTransport(webdis)) as http:
        store = WebdisStore("http://webdis.invalid", unique_prefix(), client=http)
        with pytest.raises(WebdisError, match="403") as raised:
            await store.get("k" * 43, None)
    assert "record" not in str(raised.value)


# --- the HTTP client and configuration ------------------------------------------------------


async def test_the_store_opens_and_closes_its_own_client(webdis_url: str) -> None:
    store = WebdisStore(webdis_url, "lfs-test:own:")
    await store.startup()
    own = store.client
    await store.startup()
    assert store.client is own, "startup twice opens one client"
    assert await store.get("x" * 43, None) is None
    await store.shutdown()
    await store.shutdown()
    assert own.is_closed


async def test_a_store_from_a_url_closes_its_client_when_the_app_stops(webdis_url: str) -> None:
    store = WebdisStore.from_url(webdis_url, prefix="lfs-test:url:", timeout=3, headers={"x-lfs": "1"})
    async with store.lifespan():
        own = store.client
        assert own.headers["x-lfs"] == "1", "the client options were applied"
        assert own.timeout == httpx.Timeout(3), "and the store's timeout"
        assert await store.get("x" * 43, None) is None
    assert own.is_closed
    async with store.lifespan():  # an app that starts again: a new client of the store's own
        assert store.client is not own
        assert await store.get("x" * 43, None) is None


async def test_the_store_never_closes_a_given_client(webdis_url: str) -> None:
    async with httpx.AsyncClient() as http:
        store = WebdisStore(webdis_url, "lfs-test:given:", client=http)
        async with store.lifespan():
            assert await store.get("x" * 43, None) is None
        assert not http.is_closed
        assert store.client is http
        assert (await http.get(f"{webdis_url}/PING.raw")).content == b"+PONG\r\n", "and it still works"


async def test_a_store_used_without_startup_opens_its_client_lazily(webdis_url: str) -> None:
    store = WebdisStore(webdis_url, "lfs-test:lazy:")
    try:
        assert await store.get("x" * 43, TTL) is None
    finally:
        await store.shutdown()


@pytest.mark.parametrize("prefix", ["", "has space", "a/b", "a*", "{tag}", "é", "x" * 101, "a\nb", "a%2F"])
def test_invalid_prefix_is_refused(prefix: str) -> None:
    with pytest.raises(ValueError, match="prefix"):
        WebdisStore("http://127.0.0.1:7379", prefix)


@pytest.mark.parametrize("url", ["127.0.0.1:7379", "redis://127.0.0.1:6379", ""])
def test_invalid_url_is_refused(url: str) -> None:
    with pytest.raises(ValueError, match="url"):
        WebdisStore(url)
