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
        # The wrong type: a string where a flag is due is truthy, True is the number 1.
        ({"cookie_secure": "no"}, "cookie_secure must be True, False or None"),
        ({"cookie_partitioned": "no"}, "cookie_partitioned must be True or False"),
        ({"cookie_httponly": None}, "cookie_httponly must be True or False"),
        ({"max_size_bytes": True}, "max_size_bytes must be a positive number"),
        ({"cookie_name": None}, "cookie_name must be a string"),
        ({"cookie_path": None}, "cookie_path must be a string"),
        ({"cookie_domain": 123}, "cookie_domain must be a string or None"),
        ({"cleanup_interval_seconds": "5"}, "cleanup_interval_seconds must be a positive"),
        ({"cleanup_interval_seconds": float("nan")}, "cleanup_interval_seconds must be a positive"),
        ({"cleanup_interval_seconds": float("inf")}, "cleanup_interval_seconds must be a positive"),
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


@pytest.mark.parametrize("timeout", [0, -1, "5", float("nan"), float("inf"), True])
def test_a_store_timeout_that_is_not_a_positive_number_is_refused_when_the_store_is_made(timeout: Any) -> None:
    # 0 or less answered every request 503 (logged as an outage), "5" failed at start-up.
    from litestar_flash_sessions.stores import SQLiteStore

    with pytest.raises(ValueError, match="timeout must be a positive number of seconds"):
        SQLiteStore(":memory:", timeout=timeout)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: CookieStore(None), "needs a secret"),
        (lambda: CookieStore(SECRET, cookie_name=1), "not a valid cookie name"),
        (lambda: validate_identifier(1, "table"), "not a plain identifier"),
    ],
)
def test_a_store_argument_of_the_wrong_type_is_a_value_error(make: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make()
