"""Run the contract suite on WebdisStore, against the ``webdis_url`` Webdis (tests/servers.py).

Each test gets its own key prefix, and its keys are deleted after it (through Webdis itself, so
the harness needs no Redis client). Redis keeps time itself (``injects_clock=False``): the
contract's expiry test waits for real.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import quote

import httpx

from litestar_flash_sessions import SessionBackend
from litestar_flash_sessions.stores.webdis import WebdisStore
from tests.harness import FakeClock, Harness, register


def unique_prefix() -> str:
    return f"lfs-test:{uuid.uuid4().hex}:"


async def delete_keys(url: str, prefix: str) -> None:
    """Delete every key under ``prefix`` with one server-side script.

    The script echoes a tag, and a reply without it is retried: Webdis may hand this request the
    reply of a client that vanished (see ``WebdisStore``), for example one of a fault test.
    """
    async with httpx.AsyncClient(timeout=5) as client:
        for _ in range(5):
            tag = uuid.uuid4().hex
            script = "for _, k in ipairs(redis.call('KEYS', ARGV[2])) do redis.call('DEL', k) end return ARGV[1]"
            args = ("EVAL", script, "0", tag, f"{prefix}*")
            path = "/".join(quote(arg, safe="").replace(".", "%2E") for arg in args)
            try:
                response = await client.get(f"{url.rstrip('/')}/{path}.raw")
            except httpx.TransportError:
                continue
            if response.content == f"${len(tag)}\r\n{tag}\r\n".encode():
                return
        raise AssertionError(f"could not delete the test keys under {prefix!r} through {url}")


@asynccontextmanager
async def open_webdis_store(url: str, *, cleanup_url: str | None = None, **options: Any) -> AsyncIterator[WebdisStore]:
    """A started WebdisStore with a unique prefix; after, it is shut down and its keys are
    deleted (through ``cleanup_url``, by default ``url``)."""
    store = WebdisStore(url, options.pop("prefix", None) or unique_prefix(), **options)
    await store.startup()
    try:
        yield store
    finally:
        await store.shutdown()
        await delete_keys(cleanup_url or url, store.prefix)


@asynccontextmanager
async def _webdis(clock: FakeClock, url: str) -> AsyncIterator[SessionBackend]:
    store = WebdisStore.from_url(url, prefix=unique_prefix())
    try:
        yield store
    finally:
        await store.shutdown()
        await delete_keys(url, store.prefix)


register(Harness("webdis", _webdis, injects_clock=False, server_fixture="webdis_url"))
