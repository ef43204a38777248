"""The races of ``tests/test_races.py`` over real HTTP, between two worker processes sharing a store.

Two uvicorn processes (``tests.served_races:app``, one worker each, on ports of their own) share
one Redis key prefix or one PostgreSQL table, unique to the test run. Request A goes to the
first worker, request B to the second, with the same session cookie set by hand (the clients'
cookie jars refuse every cookie, so no response leaks into a later request). Each request acts
on its session, then waits at a gate kept in Redis; once every role has arrived, the test lets
the roles go one by one in the chosen order, awaiting each response before letting the next go,
so that each commit order is forced across processes.

Besides what the responses say, each race checks the store itself: every race marks its session
with a unique value, and the live records that hold that value must be exactly the expected
ones (no orphan left by a rotation, no session brought back after a logout, no flash pending
twice).
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from http.cookiejar import CookieJar, DefaultCookiePolicy
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from litestar_flash_sessions.commit import store_key
from litestar_flash_sessions.record import Live, decode
from tests.harness_postgres import drop_table
from tests.harness_redis import delete_keys
from tests.served_races import KEY_SECONDS, POLL_SECONDS, WAIT_SECONDS, GateKeys
from tests.test_races import cookie_of, expires_cookie, in_order, set_cookies

ROOT = Path(__file__).parent.parent
COOKIE = "session"
STORE_URLS = {"redis": "redis_url", "postgres": "postgres_url"}
ORDERS = ["a-first", "b-first"]
TIMEOUT = httpx.Timeout(30.0)
LISTENING = re.compile(r"Uvicorn running on (http://127\.0\.0\.1:\d+)")


# --- the two workers, once per store -----------------------------------------------------------


@dataclass
class Served:
    """Two worker processes on one store: their base URLs, process ids and logs."""

    store: str
    urls: list[str]
    pids: list[str]
    logs: list[Path]
    key_prefix: str
    table: str
    gate_prefix: str
    redis_url: str
    store_url: str


def wait_until_serving(process: subprocess.Popen[bytes], log: Path) -> str:
    """Wait until the worker, started on port 0, says where it listens; return its base URL.

    The kernel picks the port as uvicorn binds it, so no other process can take it in between.
    """
    deadline = time.monotonic() + 30
    while (found := LISTENING.search(log.read_text())) is None:
        if process.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"the worker did not start:\n{log.read_text()[-4000:]}")
        time.sleep(0.05)
    url = found.group(1)
    response = httpx.get(f"{url}/plain", timeout=5)
    assert response.status_code == 200, response.text
    assert response.headers["x-worker-pid"] == str(process.pid), "another process answers on the worker's port"
    return url


async def clean_up(served: Served, redis_url: str, postgres_url: str | None) -> None:
    client = Redis.from_url(redis_url)
    try:
        await delete_keys(client, served.key_prefix)
        await delete_keys(client, served.gate_prefix)
    finally:
        await client.aclose()
    if postgres_url is not None:
        await drop_table(postgres_url, served.table)


@pytest.fixture(scope="module", params=sorted(STORE_URLS))
def served(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, redis_url: str
) -> Iterator[Served]:
    store = request.param
    # The gate lives in Redis whatever the store.
    store_url = request.getfixturevalue(STORE_URLS[store])
    run = uuid.uuid4().hex[:12]
    served = Served(
        store=store,
        urls=[],
        pids=[],
        logs=[],
        key_prefix=f"lfs-races-http:{run}:",
        table=f"races_http_{run}",
        gate_prefix=f"lfs-races-http-gate:{run}:",
        redis_url=redis_url,
        store_url=store_url,
    )
    env = {
        **os.environ,
        "REDIS_URL": redis_url,
        **({"POSTGRES_URL": store_url} if store == "postgres" else {}),
        "SESSION_STORE": store,
        "RACES_KEY_PREFIX": served.key_prefix,
        "RACES_TABLE": served.table,
        "RACES_GATE_PREFIX": served.gate_prefix,
    }
    directory = tmp_path_factory.mktemp(f"races-http-{store}")
    processes: list[subprocess.Popen[bytes]] = []
    try:
        for number in (1, 2):
            log = directory / f"worker{number}.log"
            with log.open("wb") as output:
                processes.append(
                    subprocess.Popen(
                        [
                            sys.executable,
                            "-m",
                            "uvicorn",
                            "tests.served_races:app",
                            "--host",
                            "127.0.0.1",
                            "--port",
                            "0",
                            "--no-access-log",
                        ],
                        cwd=ROOT,
                        env=env,
                        stdout=output,
                        stderr=subprocess.STDOUT,
                    )
                )
            served.logs.append(log)
        served.urls = [wait_until_serving(process, log) for process, log in zip(processes, served.logs, strict=True)]
        served.pids = [str(process.pid) for process in processes]
        assert len(set(served.urls)) == 2, "the two workers listen on two ports"
        yield served
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        asyncio.run(clean_up(served, redis_url, store_url if store == "postgres" else None))


def keyed(*session_ids: str) -> set[str]:
    """The store keys of the sessions ``session_ids`` (records are keyed by a hash of the id)."""
    return {store_key(session_id) for session_id in session_ids}


# --- talking to the workers, and looking into the store -----------------------------------------


def describe(responses: dict[str, httpx.Response]) -> str:
    return "; ".join(
        f"{role}: {r.status_code} set-cookie={set_cookies(r)} body={r.text[:300]!r}" for role, r in responses.items()
    )


@dataclass
class Worker:
    """One worker process, talked to with a client whose cookie jar accepts no cookie."""

    client: httpx.AsyncClient
    pid: str

    async def request(
        self, method: str, url: str, cookie: str | None, actions: dict[str, Any] | None = None
    ) -> httpx.Response:
        headers = {} if cookie is None else {"cookie": f"{COOKIE}={cookie}"}
        response = await self.client.request(method, url, json=actions, headers=headers)
        assert not self.client.cookies, "the client kept a cookie"
        assert response.headers.get("x-worker-pid") == self.pid, "answered by another process"
        return response


@dataclass
class Races:
    """The test's side of the races on one store: the two workers, the gate and the store."""

    served: Served
    workers: list[Worker]
    gate: Redis
    records: Any  # async () -> dict[session id, raw record]
    sent: list[httpx.Response] = field(default_factory=list)

    async def race(
        self,
        cookie: str,
        requests: dict[str, tuple[int, str, dict[str, Any] | None]],
        order: list[str] | None = None,
    ) -> dict[str, httpx.Response]:
        """Send the requests at once with ``cookie``; each acts on the session, then waits.

        ``requests`` maps a role to the worker (0 or 1) that gets it, a method and the actions
        of ``act`` (GET: ``{"read": key}``). Once every role has arrived, the roles are let go
        one after another in ``order`` (each response awaited before the next role goes), or
        all at once without one.
        """
        keys = GateKeys(self.served.gate_prefix, uuid.uuid4().hex)
        tasks = {}
        for role, (worker, method, actions) in requests.items():
            url = f"/act/{keys.meeting}/{role}"
            body = actions
            if method == "GET":
                url += f"?read={actions['read'] if actions else ''}"
                body = None
            tasks[role] = asyncio.create_task(self.workers[worker].request(method, url, cookie, body))
        try:
            await self._all_arrived(keys, tasks)
            responses: dict[str, httpx.Response] = {}
            if order is None:
                await self._let_go(keys, *requests)
                responses = {role: await task for role, task in tasks.items()}
            else:
                assert sorted(order) == sorted(requests)
                for role in order:
                    await self._let_go(keys, role)
                    responses[role] = await tasks[role]
            self.sent.extend(responses.values())
            return responses
        finally:
            for task in tasks.values():
                task.cancel()
            await self.gate.delete(keys.arrived, keys.go)

    async def _all_arrived(self, keys: GateKeys, tasks: dict[str, asyncio.Task[httpx.Response]]) -> None:
        arrived: set[str] = set()
        for _ in range(int(WAIT_SECONDS / POLL_SECONDS)):
            arrived = {member.decode() for member in await self.gate.smembers(keys.arrived)}  # type: ignore[misc]
            if arrived == set(tasks):
                return
            early = {role: task.result() for role, task in tasks.items() if task.done() and not task.exception()}
            failed = [
                f"{role}: {task.exception()!r}" for role, task in tasks.items() if task.done() and task.exception()
            ]
            if early or failed:
                pytest.fail(f"answered before the gate: {describe(early)} {failed}; {self.logs()}")
            await asyncio.sleep(POLL_SECONDS)
        pytest.fail(f"only {sorted(arrived)} of {sorted(tasks)} arrived at the gate; {self.logs()}")

    async def _let_go(self, keys: GateKeys, *roles: str) -> None:
        async with self.gate.pipeline(transaction=True) as pipe:
            pipe.sadd(keys.go, *roles).expire(keys.go, KEY_SECONDS)
            await pipe.execute()

    def logs(self) -> str:
        return " | ".join(f"worker {n}: {log.read_text()[-2000:]!r}" for n, log in enumerate(self.served.logs, 1))

    async def start(self, values: dict[str, Any] | None = None, flashes: dict[str, Any] | None = None) -> str:
        """Create a session holding ``values`` (through worker 1) and ``flashes`` (worker 2)."""
        cookie = None
        if values:
            response = await self.workers[0].request("POST", "/set", None, values)
            assert response.status_code == 200, response.text
            cookie = cookie_of(response)
        if flashes:
            response = await self.workers[1].request("POST", "/flash", cookie, flashes)
            assert response.status_code == 200, response.text
            cookie = cookie_of(response) or cookie
        assert cookie is not None
        return cookie

    async def live_id(self, session_id: str | None) -> str | None:
        """The id the session ``session_id`` opens as (``None``: nothing), the same on both workers."""
        ids = []
        for worker in self.workers:
            response = await worker.request("GET", "/id", session_id)
            assert response.status_code == 200, response.text
            ids.append(response.json()["id"])
        assert ids[0] == ids[1], f"the workers disagree on what {session_id} opens: {ids}"
        return ids[0]  # type: ignore[no-any-return]

    async def values(self, session_id: str, *keys: str, worker: int = 0) -> dict[str, Any]:
        """The values of ``keys`` in the session (a pending flash is read, so consumed)."""
        values = {}
        for key in keys:
            response = await self.workers[worker].request("GET", f"/read/{key}", session_id)
            assert response.status_code == 200, response.text
            values[key] = response.json()["value"]
        return values

    async def holding(self, marker: str) -> set[str]:
        """The keys of the live records in the store that hold ``marker`` (as a value or a flash)."""
        found = set()
        for session_id, raw in (await self.records()).items():
            if marker.encode() in raw and isinstance(decode(raw), Live):
                found.add(session_id)
        return found

    async def explain(self, responses: dict[str, httpx.Response], *session_ids: str | None) -> str:
        """What the responses said and what the store holds, for a failure's message."""
        records = await self.records()
        held = {
            sid: decode(records[store_key(sid)]) if store_key(sid) in records else None for sid in session_ids if sid
        }
        return f"responses: {describe(responses)}; store: {held!r}"


@pytest.fixture
async def races(served: Served) -> AsyncIterator[Races]:
    gate = Redis.from_url(served.redis_url)
    clients = [
        httpx.AsyncClient(base_url=url, timeout=TIMEOUT, cookies=CookieJar(DefaultCookiePolicy(allowed_domains=[])))
        for url in served.urls
    ]
    connection = None
    if served.store == "redis":

        async def records() -> dict[str, bytes]:
            found = {}
            async for key in gate.scan_iter(match=f"{served.key_prefix}*", count=500):
                raw = await gate.get(key)
                if raw is not None:
                    found[key.decode()[len(served.key_prefix) :]] = raw
            return found

    else:
        import asyncpg  # type: ignore[import-untyped]

        connection = await asyncpg.connect(served.store_url)

        async def records() -> dict[str, bytes]:
            rows = await connection.fetch(
                f'SELECT id, data FROM "{served.table}" WHERE expires_at IS NULL OR expires_at > now()'
            )
            return {row["id"]: bytes(row["data"]) for row in rows}

    try:
        yield Races(served, [Worker(c, pid) for c, pid in zip(clients, served.pids, strict=True)], gate, records)
    finally:
        for client in clients:
            await client.aclose()
        if connection is not None:
            await connection.close()
        await gate.aclose()


# --- two requests, in each commit order: A on worker 1, B on worker 2 ---------------------------


def two(a: dict[str, Any], b: dict[str, Any]) -> dict[str, tuple[int, str, dict[str, Any] | None]]:
    return {"a": (0, "POST", a), "b": (1, "POST", b)}


def all_ok(responses: dict[str, httpx.Response]) -> bool:
    return all(r.status_code == 200 for r in responses.values())


async def emptying_against_a_write(races: Races, order: list[str]) -> None:
    """A consumes the last flash (the session's only content) while B sets a key."""
    marker = uuid.uuid4().hex
    old = await races.start(flashes={"m": "last"})
    responses = await races.race(old, two({"read": ["m"]}, {"set": {"k": marker}}), order)
    why = await races.explain(responses, old)
    assert all_ok(responses), why
    assert responses["a"].json()["read"] == {"m": "last"}, why
    assert not any(set_cookies(r) for r in responses.values()), f"a response set or expired the cookie: {why}"
    assert await races.live_id(old) == old, f"the session was deleted: {why}"
    assert await races.holding(marker) == keyed(old), f"B's key is not (only) on the session: {why}"
    assert await races.values(old, "k", "m") == {"k": marker, "m": None}, f"B's key lost or the flash back: {why}"


async def newer_flash_of_the_same_key(races: Races, order: list[str]) -> None:
    """A consumes flash m=v1 while B flashes m=v2: v2 stays pending."""
    marker = uuid.uuid4().hex
    session_id = await races.start({"keep": marker}, flashes={"m": "v1"})
    responses = await races.race(session_id, two({"read": ["m"]}, {"flash": {"m": "v2"}}), order)
    why = await races.explain(responses, session_id)
    assert all_ok(responses), why
    assert responses["a"].json()["read"] == {"m": "v1"}, why
    assert not any(set_cookies(r) for r in responses.values()), f"a response set or expired the cookie: {why}"
    assert await races.holding(marker) == keyed(session_id), why
    assert await races.values(session_id, "m", worker=1) == {"m": "v2"}, f"the newer flash was dropped: {why}"
    assert await races.values(session_id, "m", "keep") == {"m": None, "keep": marker}, f"v2 shown twice: {why}"


async def rotation_against_a_write(races: Races, order: list[str]) -> None:
    """A rotates (a login) while B sets a key: B's key lands on the new id."""
    marker = uuid.uuid4().hex
    old = await races.start({"user": marker})
    responses = await races.race(old, two({"rotate": True}, {"set": {"k": "b"}}), order)
    new = cookie_of(responses["a"])
    why = await races.explain(responses, old, new)
    assert all_ok(responses), why
    assert new is not None, f"A's response set no new id: {why}"
    assert new != old, why
    assert set_cookies(responses["b"]) == [], f"B's response must neither expire nor set the cookie: {why}"
    assert new not in responses["b"].text, f"B's response revealed the new id: {why}"
    assert await races.live_id(old) is None, f"the old id still opens a session: {why}"
    assert await races.live_id(new) == new, why
    assert await races.values(new, "user", "k") == {"user": marker, "k": "b"}, f"B's write was lost: {why}"
    assert await races.holding(marker) == keyed(new), f"the session lives elsewhere too: {why}"


async def rotation_against_a_logout(races: Races, order: list[str]) -> None:
    """A rotates while B logs out: no live id afterwards, whichever response the browser keeps."""
    marker = uuid.uuid4().hex
    old = await races.start({"user": marker})
    responses = await races.race(old, two({"rotate": True}, {"logout": True}), order)
    candidates = {old} | {h.split(";")[0].split("=", 1)[1] for r in responses.values() for h in set_cookies(r)}
    why = await races.explain(responses, *candidates)
    assert all_ok(responses), why
    assert expires_cookie(responses["b"]), f"the logout did not expire the cookie: {why}"
    for session_id in candidates - {""}:
        assert await races.live_id(session_id) is None, f"{session_id} outlived the logout: {why}"
    assert await races.holding(marker) == set(), f"a rotation left a session under an id nobody knows: {why}"


async def two_rotations(races: Races, order: list[str]) -> None:
    """A and B both rotate: exactly one live id, and no response sets a dead one."""
    marker = uuid.uuid4().hex
    old = await races.start({"user": marker})
    responses = await races.race(old, two({"rotate": True}, {"rotate": True}), order)
    sent = [cookie_of(r) for r in responses.values()]
    why = await races.explain(responses, old, *sent)
    assert all_ok(responses), why
    assert await races.live_id(old) is None, f"the old id still opens a session: {why}"
    live = [value for value in sent if value is not None and await races.live_id(value) == value]
    assert len(live) == 1, f"live ids afterwards: {len(live)}: {why}"
    assert all(value in live for value in sent if value is not None), f"a response set a dead id: {why}"
    assert await races.holding(marker) == keyed(*live), f"the session lives elsewhere too: {why}"
    assert await races.values(live[0], "user") == {"user": marker}, why


async def logout_against_a_write(races: Races, order: list[str]) -> None:
    """A logs out while B writes: the logout wins."""
    marker = uuid.uuid4().hex
    old = await races.start({"user": marker})
    responses = await races.race(old, two({"logout": True}, {"set": {"k": "b"}}), order)
    why = await races.explain(responses, old)
    assert all_ok(responses), why
    assert expires_cookie(responses["a"]), f"the logout did not expire the cookie: {why}"
    assert not [h for r in responses.values() for h in set_cookies(r) if "Max-Age=0" not in h], f"a cookie set: {why}"
    assert await races.live_id(old) is None, f"the write brought the session back: {why}"
    assert await races.holding(marker) == set(), f"the session outlived the logout: {why}"


PAIRS = [
    emptying_against_a_write,
    newer_flash_of_the_same_key,
    rotation_against_a_write,
    rotation_against_a_logout,
    two_rotations,
    logout_against_a_write,
]


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("scenario", PAIRS, ids=lambda scenario: scenario.__name__)
async def test_two_requests_on_two_workers_in_each_order(races: Races, scenario: Any, order: str) -> None:
    await scenario(races, in_order(order))


# --- many requests at once, spread over both workers -------------------------------------------


async def test_fifty_writers_on_two_workers_all_keep_their_key(races: Races) -> None:
    marker = uuid.uuid4().hex
    session_id = await races.start({"seed": marker})
    writers = 50
    requests = {f"w{i}": (i % 2, "POST", {"set": {f"k{i}": i}}) for i in range(writers)}
    responses = await races.race(session_id, requests)
    why = await races.explain({role: r for role, r in responses.items() if r.status_code != 200}, session_id)
    assert sorted(r.status_code for r in responses.values()) == [200] * writers, why
    assert not any(set_cookies(r) for r in responses.values()), f"a write set or expired the cookie: {why}"
    kept = await races.values(session_id, *(f"k{i}" for i in range(writers)), "seed")
    assert kept == {**{f"k{i}": i for i in range(writers)}, "seed": marker}, f"a concurrent write was lost: {why}"
    assert await races.holding(marker) == keyed(session_id), why


async def test_a_lone_flash_read_by_six_on_two_workers_is_shown_once(races: Races) -> None:
    marker = uuid.uuid4().hex
    session_id = await races.start(flashes={"message": marker})
    readers = 6
    requests = {f"r{i}": (i % 2, "GET", {"read": "message"}) for i in range(readers)}
    responses = await races.race(session_id, requests)
    why = await races.explain(responses, session_id)
    shown = [r for r in responses.values() if r.status_code == 200 and r.json()["read"]["message"] == marker]
    assert len(shown) == 1, f"the flash was shown {len(shown)} times: {why}"
    others = [r for r in responses.values() if r not in shown]
    assert sorted(r.status_code for r in others) == [303] * (readers - 1), why
    assert all(r.headers["location"] == r.request.url.raw_path.decode() for r in others), why
    assert not any(set_cookies(r) for r in responses.values()), f"a reader set or expired the cookie: {why}"
    assert await races.holding(marker) == set(), f"the flash is still pending: {why}"
