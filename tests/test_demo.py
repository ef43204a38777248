"""The login demo's whole story, as a browser would live it."""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from litestar.testing import TestClient

from examples.login import ABSOLUTE_TIMEOUT_SECONDS, IDLE_TIMEOUT_SECONDS, MAX_FIELD_LENGTH, create_app
from litestar_flash_sessions import SessionConfig, SessionPlugin
from litestar_flash_sessions.stores import MemoryStore
from tests.faults import free_port

ROOT = Path(__file__).parent.parent
DEMO_SETTINGS = ("SESSION_STORE", "SESSION_IDLE_TIMEOUT", "SESSION_ABSOLUTE_TIMEOUT")
"""Settings of the caller's environment the demo must not see: the tests choose them."""


def element(page: str, element_id: str) -> str | None:
    """The text of the element with this id, or None when the page has no such element."""
    match = re.search(rf'<(\w+)[^>]*\bid="{element_id}"[^>]*>(.*?)</\1>', page, re.S)
    if match is None:
        return None if f'id="{element_id}"' not in page else ""
    return re.sub(r"\s+", " ", match.group(2)).strip()


def login_story(client: httpx.Client | TestClient[Any]) -> None:
    page = client.get("/").text
    assert element(page, "login-button") == "Log in"
    assert element(page, "email") == ""
    assert element(page, "password") == ""
    assert element(page, "logout-button") is None
    assert element(page, "failed-login-attempts") == ""

    for attempt in (1, 2):
        response = client.post("/login", data={"email": "ann@example.com", "password": "wrong"}, follow_redirects=False)
        assert response.status_code == 302
        assert response.headers["location"] == "/"
        page = client.get("/").text
        assert element(page, "error") == "Incorrect username or password"
        assert element(page, "failed-login-attempts") == f"Failed login attempts: {attempt}"
        page = client.get("/").text
        assert element(page, "error") == "", "the error is shown once"
        assert element(page, "failed-login-attempts") == f"Failed login attempts: {attempt}"

    id_before_login = client.cookies.get("session") or client.cookies.get("session_data")
    response = client.post(
        "/login", data={"email": "<b>ann</b>@example.com", "password": "correct"}, follow_redirects=False
    )
    assert response.status_code == 302
    assert (client.cookies.get("session") or client.cookies.get("session_data")) != id_before_login
    page = client.get("/").text
    assert element(page, "message") == "Login successful"
    assert element(page, "failed-login-attempts") == ""
    assert element(page, "logout-button") == "Log out &lt;b&gt;ann&lt;/b&gt;@example.com"
    assert "<b>ann</b>" not in page, "what users type is escaped"
    assert element(page, "login-button") is None

    page = client.get("/").text  # reload
    assert element(page, "message") == "", "the success message is shown once"
    assert element(page, "logout-button") == "Log out &lt;b&gt;ann&lt;/b&gt;@example.com"

    response = client.post("/logout", follow_redirects=False)
    assert response.status_code == 302
    assert "Max-Age=0" in response.headers["set-cookie"]
    page = client.get("/").text
    assert element(page, "login-button") == "Log in"
    assert element(page, "failed-login-attempts") == ""
    assert element(page, "message") == ""
    assert element(page, "error") == ""
    assert not client.cookies, "a fresh session: no cookie at all"


@pytest.mark.parametrize("store", ["memory", "cookie"])
def test_login_story_in_process(store: str) -> None:
    with TestClient(create_app(store), base_url="http://testserver.local") as client:
        login_story(client)


class Clock:
    """A clock the test moves by hand: no sleeps."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def demo_client(store: MemoryStore) -> TestClient[Any]:
    return TestClient(create_app(store), base_url="http://testserver.local")


def plugin_config(store: str = "memory") -> SessionConfig:
    return create_app(store).plugins.get(SessionPlugin).config


def test_the_demo_sets_an_idle_and_an_absolute_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SESSION_IDLE_TIMEOUT", raising=False)
    monkeypatch.delenv("SESSION_ABSOLUTE_TIMEOUT", raising=False)
    config = plugin_config()
    assert IDLE_TIMEOUT_SECONDS == 30 * 60
    assert ABSOLUTE_TIMEOUT_SECONDS == 8 * 60 * 60
    assert config.expire_after_seconds == IDLE_TIMEOUT_SECONDS
    assert config.absolute_timeout_seconds == ABSOLUTE_TIMEOUT_SECONDS


def test_the_timeouts_can_be_overridden_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SESSION_IDLE_TIMEOUT", "60")
    monkeypatch.setenv("SESSION_ABSOLUTE_TIMEOUT", "3600")
    config = plugin_config()
    assert config.expire_after_seconds == 60
    assert config.absolute_timeout_seconds == 3600

    monkeypatch.setenv("SESSION_IDLE_TIMEOUT", "half an hour")
    with pytest.raises(ValueError, match="SESSION_IDLE_TIMEOUT"):
        plugin_config()


def test_a_session_idle_for_30_minutes_expires() -> None:
    clock = Clock()
    with demo_client(MemoryStore(clock=clock)) as client:
        client.post("/login", data={"email": "ann@example.com", "password": "correct"})
        clock.now += IDLE_TIMEOUT_SECONDS - 1
        page = client.get("/").text
        assert element(page, "logout-button") == "Log out ann@example.com", "a request keeps the session alive"
        clock.now += IDLE_TIMEOUT_SECONDS - 1
        assert element(client.get("/").text, "logout-button") == "Log out ann@example.com"
        clock.now += IDLE_TIMEOUT_SECONDS
        page = client.get("/").text
    assert element(page, "logout-button") is None
    assert element(page, "login-button") == "Log in"


def test_a_session_8_hours_old_expires_however_active() -> None:
    clock = Clock()
    with demo_client(MemoryStore(clock=clock)) as client:
        client.post("/login", data={"email": "ann@example.com", "password": "correct"})
        started = clock.now
        while clock.now + 29 * 60 < started + ABSOLUTE_TIMEOUT_SECONDS:
            clock.now += 29 * 60  # active well within the idle timeout
            page = client.get("/").text
            assert element(page, "logout-button") == "Log out ann@example.com"
        clock.now = started + ABSOLUTE_TIMEOUT_SECONDS - 1
        assert element(client.get("/").text, "logout-button") == "Log out ann@example.com"
        clock.now = started + ABSOLUTE_TIMEOUT_SECONDS
        page = client.get("/").text
    assert element(page, "logout-button") is None
    assert element(page, "login-button") == "Log in"


def too_long_fields(field: str, length: int) -> dict[str, str]:
    return {"email": "ann@example.com", "password": "wrong", field: "x" * length}


@pytest.mark.parametrize("field", ["email", "password"])
def test_a_field_over_256_characters_is_refused_and_stores_nothing(field: str) -> None:
    store = MemoryStore()
    with demo_client(store) as client:
        response = client.post("/login", data=too_long_fields(field, 300), follow_redirects=False)
        assert response.status_code == 400
        assert response.json()["detail"] == f"{field} is too long: at most {MAX_FIELD_LENGTH} characters"
        assert [item["key"] for item in response.json()["extra"]] == [field]
        assert "set-cookie" not in response.headers
        assert len(store) == 0, "no session was stored"
        assert not client.cookies
        page = client.get("/").text
    assert element(page, "error") == "", "no flash for a refused login"
    assert element(page, "failed-login-attempts") == ""
    assert len(store) == 0


def test_both_fields_too_long_are_both_named() -> None:
    with demo_client(MemoryStore()) as client:
        response = client.post("/login", data={"email": "x" * 300, "password": "y" * 300})
    assert response.status_code == 400
    assert response.json()["detail"] == f"email and password are too long: at most {MAX_FIELD_LENGTH} characters"


@pytest.mark.parametrize("field", ["email", "password"])
def test_a_refused_login_leaves_an_existing_session_untouched(field: str) -> None:
    clock = Clock()
    store = MemoryStore(clock=clock)
    with demo_client(store) as client:
        client.post("/login", data={"email": "ann@example.com", "password": "wrong"})
        page = client.get("/").text
        assert element(page, "failed-login-attempts") == "Failed login attempts: 1"
        cookie = client.cookies["session"]
        assert len(store) == 1

        clock.now += IDLE_TIMEOUT_SECONDS - 10
        response = client.post("/login", data=too_long_fields(field, 300), follow_redirects=False)
        assert response.status_code == 400
        assert "set-cookie" not in response.headers
        assert client.cookies["session"] == cookie
        assert len(store) == 1

        page = client.get("/").text
    # The hook that refuses runs after the session is loaded (hooks may read request.session), so
    # the refused request is a read: it changes nothing, it only slides the idle timeout.
    assert element(page, "failed-login-attempts") == "Failed login attempts: 1", "the refused login counted nothing"
    assert element(page, "error") == ""


def test_a_refused_login_shows_no_flash_and_counts_no_attempt() -> None:
    store = MemoryStore()
    with demo_client(store) as client:
        client.post("/login", data={"email": "ann@example.com", "password": "wrong"})
        client.get("/")
        response = client.post("/login", data=too_long_fields("email", 300), follow_redirects=False)
        assert response.status_code == 400
        page = client.get("/").text
    assert element(page, "error") == ""
    assert element(page, "failed-login-attempts") == "Failed login attempts: 1"
    assert len(store) == 1


def test_fields_of_256_characters_are_accepted() -> None:
    email = "a" * (MAX_FIELD_LENGTH - len("@example.com")) + "@example.com"
    assert len(email) == MAX_FIELD_LENGTH
    with demo_client(MemoryStore()) as client:
        response = client.post("/login", data=too_long_fields("password", MAX_FIELD_LENGTH), follow_redirects=False)
        assert response.status_code == 302
        page = client.get("/").text
        assert element(page, "error") == "Incorrect username or password"
        assert element(page, "failed-login-attempts") == "Failed login attempts: 1"

        response = client.post("/login", data={"email": email, "password": "correct"}, follow_redirects=False)
        assert response.status_code == 302
        page = client.get("/").text
    assert element(page, "message") == "Login successful"
    assert element(page, "logout-button") == f"Log out {email}"


@contextmanager
def serve_demo(database: Path, script: str = "examples/login.py") -> Iterator[str]:
    """A demo as its README command serves it: a real process on a real port, on its default
    store (SQLite), with the database file at ``database``.
    """
    port = free_port()
    env = {key: value for key, value in os.environ.items() if key not in DEMO_SETTINGS}
    process = subprocess.Popen(
        [sys.executable, script, "--port", str(port)],
        cwd=ROOT,
        env={**env, "SESSION_SQLITE_PATH": str(database)},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                httpx.get(url, timeout=1)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise
                time.sleep(0.05)
        yield url
    finally:
        process.terminate()
        process.wait(10)


@pytest.fixture
def demo_server(tmp_path: Path) -> Iterator[str]:
    with serve_demo(tmp_path / "sessions.db") as url:
        yield url


def test_login_story_over_http(demo_server: str) -> None:
    with httpx.Client(base_url=demo_server) as client:
        login_story(client)


def session_rows(database: Path) -> int:
    with sqlite3.connect(database) as connection:
        return int(connection.execute("SELECT COUNT(*) FROM sessions").fetchone()[0])


def test_a_refused_login_adds_no_row_over_http(demo_server: str, tmp_path: Path) -> None:
    database = tmp_path / "sessions.db"
    with httpx.Client(base_url=demo_server) as client:
        response = client.post("/login", data=too_long_fields("email", 300))
        assert response.status_code == 400
        assert "email is too long" in response.text
        assert "set-cookie" not in response.headers
        assert session_rows(database) == 0

        response = client.post("/login", data=too_long_fields("password", MAX_FIELD_LENGTH))
        assert response.status_code == 302
        assert session_rows(database) == 1

        response = client.post("/login", data=too_long_fields("password", 300))
        assert response.status_code == 400
        assert "password is too long" in response.text
        assert session_rows(database) == 1
        page = client.get("/").text
    assert element(page, "failed-login-attempts") == "Failed login attempts: 1"


def test_sessions_survive_a_restart_of_the_demo(tmp_path: Path) -> None:
    database = tmp_path / "sessions.db"
    with serve_demo(database) as url:
        response = httpx.post(f"{url}/login", data={"email": "ann@example.com", "password": "correct"})
        cookie = response.cookies["session"]
    with serve_demo(database) as url:
        page = httpx.get(url, cookies={"session": cookie}).text
    assert element(page, "logout-button") == "Log out ann@example.com"
    assert element(page, "message") == "Login successful", "the flash waited in the database"
