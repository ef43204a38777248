"""Bad configuration fails at start-up with a ValueError that says what to change."""

from __future__ import annotations

from typing import Any

import pytest

from litestar_flash_sessions import SessionConfig
from litestar_flash_sessions.stores import CookieStore
from litestar_flash_sessions.stores.base import validate_identifier
from tests.harness import SECRET


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"store": object()}, "store must be a session store"),
        ({"cookie_name": "has space"}, "not a valid cookie name"),
        ({"cookie_name": ""}, "not a valid cookie name"),
        ({"cookie_name": "a;b"}, "not a valid cookie name"),
        ({"expire_after_seconds": -1}, "expire_after_seconds must be a positive"),
        ({"cookie_max_age": 0}, "cookie_max_age must be a positive"),
        ({"cookie_path": "app"}, "must start with '/'"),
        ({"cookie_path": "/a;b"}, "must start with '/'"),
        ({"cookie_domain": "a.com; Secure"}, "cookie_domain"),
        ({"cookie_samesite": "sometimes"}, "cookie_samesite must be"),
        ({"cookie_samesite": "none", "cookie_secure": False}, "needs a secure cookie"),
        ({"cleanup_interval_seconds": 0}, "cleanup_interval_seconds must be a positive"),
    ],
)
def test_bad_config_is_a_value_error(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SessionConfig(**fields)


def test_zero_idle_timeout_means_never() -> None:
    assert SessionConfig(expire_after_seconds=0).ttl is None
    assert SessionConfig(expire_after_seconds=None).ttl is None
    assert SessionConfig(expire_after_seconds=30).ttl == 30


@pytest.mark.parametrize(
    "secret",
    [
        "short",
        "x" * 31,
        [SECRET, "y" * 31],
        [],
        [b"x" * 32],
        "a" * 32,
        "password" * 4,
        "ab" * 40,
        "abc123" * 6,
        "asdfghjkl" * 4,
        "123456" * 7,
    ],
)
def test_cookie_store_rejects_weak_secrets(secret: Any) -> None:
    with pytest.raises(ValueError, match="secret") as raised:
        CookieStore(secret)
    if secret:
        assert "secrets.token_urlsafe(32)" in str(raised.value), "the message says how to make a good one"


def test_a_generated_secret_of_128_bits_is_always_accepted() -> None:
    """32 hex digits are 128 bits whichever digits they happen to show (an estimate by distinct
    characters refused most of them)."""
    import base64
    import os
    import secrets

    for _ in range(500):
        CookieStore(secrets.token_hex(16))
        CookieStore(secrets.token_hex(16).upper())
        CookieStore(secrets.token_urlsafe(24))
        CookieStore(base64.b64encode(os.urandom(24)).decode())
    with pytest.raises(ValueError, match="about 106 bits"):
        CookieStore("31415926535897932384626433832795")  # 32 decimal digits: 106 bits


def test_cookie_store_rejects_bad_cookie_name() -> None:
    with pytest.raises(ValueError, match="not a valid cookie name"):
        CookieStore(SECRET, cookie_name="bad name")


@pytest.mark.parametrize("name", ["sessions", "_s", "Sessions_2"])
def test_plain_identifiers_pass(name: str) -> None:
    assert validate_identifier(name, "table") == name


@pytest.mark.parametrize("name", ["", "1abc", "a-b", "a b", "sessions; DROP TABLE x", 'a"', "x" * 64, "é"])
def test_other_identifiers_are_refused(name: str) -> None:
    with pytest.raises(ValueError, match="not a plain identifier"):
        validate_identifier(name, "table")


def test_a_cookie_name_the_cookie_store_would_ignore_is_a_value_error() -> None:
    from litestar_flash_sessions.stores import CookieStore

    store = CookieStore(SECRET, cookie_name="sealed")
    with pytest.raises(ValueError, match="would be ignored"):
        SessionConfig(store=store, cookie_name="mine")
    assert SessionConfig(store=store).session_cookie_name == "sealed"
    assert SessionConfig(store=store, cookie_name="sealed").session_cookie_name == "sealed"
    assert SessionConfig(cookie_name="mine").session_cookie_name == "mine"


def test_the_session_object_exposes_the_documented_api_only() -> None:
    from litestar_flash_sessions import FlashSession

    public = {name for name in dir(FlashSession) if not name.startswith("_")}
    documented = {"delete_session", "flash", "flashes", "get", "has", "id", "keep", "peek_flashes", "rotate_key"}
    documented |= {"set", "set_expiry", "to_dict"}
    documented |= {"bind_user", "unbind_user", "user_id", "handle"}  # docs/users.md
    mapping = {"clear", "items", "keys", "pop", "setdefault", "update", "values"}
    assert public == documented | mapping
