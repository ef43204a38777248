"""Bad configuration fails at start-up with a ValueError that says what to change."""

from __future__ import annotations

from typing import Any

import pytest

from litestar_flash_sessions import SessionConfig
from litestar_flash_sessions.stores import CookieStore
from litestar_flash_sessions.stores.base import validate_identifier


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


@pytest.mark.parametrize("secret", ["short", "x" * 31, ["x" * 32, "y" * 31], [], [b"x" * 32]])
def test_cookie_store_rejects_weak_secrets(secret: Any) -> None:
    with pytest.raises(ValueError, match="secret"):
        CookieStore(secret)


def test_cookie_store_rejects_bad_cookie_name() -> None:
    with pytest.raises(ValueError, match="not a valid cookie name"):
        CookieStore("x" * 32, cookie_name="bad name")


@pytest.mark.parametrize("name", ["sessions", "_s", "Sessions_2"])
def test_plain_identifiers_pass(name: str) -> None:
    assert validate_identifier(name, "table") == name


@pytest.mark.parametrize("name", ["", "1abc", "a-b", "a b", "sessions; DROP TABLE x", 'a"', "x" * 64, "é"])
def test_other_identifiers_are_refused(name: str) -> None:
    with pytest.raises(ValueError, match="not a plain identifier"):
        validate_identifier(name, "table")
