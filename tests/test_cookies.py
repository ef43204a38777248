"""The session cookie's attributes (SPEC section 6), on HTTP and HTTPS, for both cookie kinds."""

from __future__ import annotations

from typing import Any

import pytest

from litestar_flash_sessions import SessionConfig
from litestar_flash_sessions.stores import CookieStore, MemoryStore
from tests.app import build_app
from tests.conftest import in_loop_client
from tests.harness import SECRET

STORES = {"memory": MemoryStore, "cookie": lambda: CookieStore(SECRET)}


async def set_cookie_after_login(base_url: str, store: str, **config: Any) -> list[str]:
    app = build_app(SessionConfig(store=STORES[store](), **config))
    async with app.lifespan(), in_loop_client(app, base_url) as client:
        response = await client.post("/set", json={"user": "ann"})
        assert response.status_code == 200
        return list(response.headers.get_list("set-cookie"))


def attributes(header: str) -> list[str]:
    return [part.strip() for part in header.split(";")[1:]]


@pytest.mark.parametrize("store", sorted(STORES))
async def test_defaults_over_http(store: str) -> None:
    [header] = await set_cookie_after_login("http://testserver.local", store)
    assert attributes(header) == ["Path=/", "HttpOnly", "SameSite=Lax"]


@pytest.mark.parametrize("store", sorted(STORES))
async def test_defaults_over_https_add_secure(store: str) -> None:
    [header] = await set_cookie_after_login("https://testserver.local", store)
    assert attributes(header) == ["Path=/", "HttpOnly", "SameSite=Lax", "Secure"]


@pytest.mark.parametrize("store", sorted(STORES))
async def test_every_attribute_is_configurable(store: str) -> None:
    [header] = await set_cookie_after_login(
        "http://testserver.local",
        store,
        cookie_path="/app",
        cookie_domain="example.com",
        cookie_secure=True,
        cookie_httponly=False,
        cookie_samesite="strict",
        cookie_max_age=3600,
    )
    assert attributes(header) == ["Path=/app", "Domain=example.com", "Max-Age=3600", "SameSite=Strict", "Secure"]


async def test_secure_false_is_kept_over_https() -> None:
    [header] = await set_cookie_after_login("https://testserver.local", "memory", cookie_secure=False)
    assert "Secure" not in attributes(header)


async def test_samesite_none_with_secure() -> None:
    [header] = await set_cookie_after_login(
        "http://testserver.local", "memory", cookie_samesite="none", cookie_secure=True
    )
    assert "SameSite=None" in attributes(header)
    assert "Secure" in attributes(header)


async def test_cookie_name_is_configurable() -> None:
    [header] = await set_cookie_after_login("http://testserver.local", "memory", cookie_name="sid")
    assert header.startswith("sid=")


@pytest.mark.parametrize("store", sorted(STORES))
async def test_logout_expires_the_cookie_with_its_path_and_domain(store: str) -> None:
    app = build_app(SessionConfig(store=STORES[store](), cookie_path="/", cookie_domain="testserver.local"))
    async with app.lifespan(), in_loop_client(app) as client:
        await client.post("/set", json={"user": "ann"})
        response = await client.post("/logout")
        [header] = response.headers.get_list("set-cookie")
        name = "session_data" if store == "cookie" else "session"
        assert header == f"{name}=; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Max-Age=0; Path=/; Domain=testserver.local"
        assert response.headers["vary"] == "Cookie"


@pytest.mark.parametrize("store", sorted(STORES))
async def test_one_set_cookie_per_response_even_when_everything_changes(store: str) -> None:
    app = build_app(SessionConfig(store=STORES[store](), expire_after_seconds=60, cookie_max_age=60))
    async with app.lifespan(), in_loop_client(app) as client:
        await client.post("/set", json={"user": "ann"})
        await client.post("/flash", json={"m": 1})
        response = await client.post("/rotate-state")
        assert len(response.headers.get_list("set-cookie")) == 1
