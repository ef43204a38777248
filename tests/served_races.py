"""The contract app as one worker process of a race across processes (``tests/test_races_http.py``).

``uvicorn tests.served_races:app --port PORT`` with, in the environment:

* ``SESSION_STORE``: ``redis`` or ``postgres``, on ``REDIS_URL`` (key prefix ``RACES_KEY_PREFIX``)
  or ``POSTGRES_URL`` (table ``RACES_TABLE``); every worker of a test run shares the same store;
* ``REDIS_URL`` and ``RACES_GATE_PREFIX``: the gate, in Redis whatever the store, so that it
  holds the requests of every worker process.

The ``act`` endpoints are those of ``tests/app.py`` with a gate that works across processes: after
acting on its session, a request adds its role to the meeting's "arrived" set, then polls the
meeting's "go" set until the test puts its role there; it commits when its handler returns. Every
response names its worker process in ``x-worker-pid``. The app is built at its first ASGI call
(the lifespan's startup), so the test process can import the gate's key layout from here.
"""

from __future__ import annotations

import asyncio
import functools
import os
from dataclasses import dataclass
from typing import Any

from litestar import Litestar, get, post
from litestar.datastructures import State
from litestar.params import FromPath, FromQuery, JSONBody
from litestar.types import ASGIApp, Receive, Scope, Send
from redis.asyncio import Redis

from litestar_flash_sessions import Session, SessionConfig, SessionPlugin
from litestar_flash_sessions.backend import SessionBackend
from tests import app as contract
from tests.worker import naming_the_worker

POLL_SECONDS = 0.01
"""How often a held request looks for its release."""
WAIT_SECONDS = 10.0
"""How long a held request waits for its release before it fails (a 500: nothing is saved)."""
KEY_SECONDS = 60
"""The gate's keys expire by themselves after this long, should a test not delete them."""


@dataclass(frozen=True)
class GateKeys:
    """The Redis keys of one meeting: the set of roles that arrived, the set of roles let go."""

    prefix: str
    meeting: str

    @property
    def arrived(self) -> str:
        return f"{self.prefix}{self.meeting}:arrived"

    @property
    def go(self) -> str:
        return f"{self.prefix}{self.meeting}:go"


async def wait_at_gate(client: Redis, keys: GateKeys, role: str) -> None:
    """Mark ``role`` arrived, then wait until the test lets it go.

    Raises:
        TimeoutError: ``role`` was not let go within :data:`WAIT_SECONDS`.
    """
    async with client.pipeline(transaction=True) as pipe:
        pipe.sadd(keys.arrived, role).expire(keys.arrived, KEY_SECONDS)
        await pipe.execute()
    for _ in range(int(WAIT_SECONDS / POLL_SECONDS)):
        if await client.sismember(keys.go, role):  # type: ignore[misc]
            return
        await asyncio.sleep(POLL_SECONDS)
    raise TimeoutError(f"{role} of meeting {keys.meeting} was not let go within {WAIT_SECONDS} s")


async def hold(state: State, meeting: str, role: str) -> None:
    await wait_at_gate(state.gate, GateKeys(os.environ["RACES_GATE_PREFIX"], meeting), role)


@post("/act/{meeting:str}/{role:str}", status_code=200)
async def act(
    session: Session, state: State, meeting: FromPath[str], role: FromPath[str], data: JSONBody[dict[str, Any]]
) -> Any:
    result = contract.act_on(session, data)
    await hold(state, meeting, role)
    return result


@get("/act/{meeting:str}/{role:str}")
async def act_reading(
    session: Session, state: State, meeting: FromPath[str], role: FromPath[str], read: FromQuery[str]
) -> Any:
    result = contract.act_on(session, {"read": [read]})
    await hold(state, meeting, role)
    return result


def make_store() -> SessionBackend:
    """The store named by ``SESSION_STORE``, on the key prefix or table of this test run."""
    name = os.environ["SESSION_STORE"]
    if name == "redis":
        from litestar_flash_sessions.stores.redis import RedisStore

        return RedisStore.from_url(os.environ["REDIS_URL"], prefix=os.environ["RACES_KEY_PREFIX"])
    if name == "postgres":
        from litestar_flash_sessions.stores.postgres import PostgresStore

        return PostgresStore(os.environ["POSTGRES_URL"], os.environ["RACES_TABLE"])
    raise ValueError(f"SESSION_STORE must be redis or postgres, not {name!r}")


async def open_gate(app: Litestar) -> None:
    app.state.gate = Redis.from_url(os.environ["REDIS_URL"])


async def close_gate(app: Litestar) -> None:
    await app.state.gate.aclose()


@functools.cache
def build() -> Litestar:
    handlers = [act, act_reading, *(h for h in contract.HANDLERS if h not in (contract.act, contract.act_reading))]
    return Litestar(
        handlers,
        plugins=[SessionPlugin(SessionConfig(store=make_store()))],
        on_startup=[open_gate],
        on_shutdown=[close_gate],
    )


@functools.cache
def served() -> ASGIApp:
    return naming_the_worker(build())


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    """Built at the first request, not at import: the test module imports this one for its constants."""
    await served()(scope, receive, send)
