"""The login demo's whole story, as a browser would live it."""

from __future__ import annotations

import os
import re
import socket
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

from examples.login import create_app

ROOT = Path(__file__).parent.parent


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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def serve_demo(database: Path) -> Iterator[str]:
    """The demo as its README command serves it: a real process on a real port, on its default
    store (SQLite), with the database file at ``database``.
    """
    port = free_port()
    env = {key: value for key, value in os.environ.items() if key != "SESSION_STORE"}
    process = subprocess.Popen(
        [sys.executable, "examples/login.py", "--port", str(port)],
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


def test_sessions_survive_a_restart_of_the_demo(tmp_path: Path) -> None:
    database = tmp_path / "sessions.db"
    with serve_demo(database) as url:
        response = httpx.post(f"{url}/login", data={"email": "ann@example.com", "password": "correct"})
        cookie = response.cookies["session"]
    with serve_demo(database) as url:
        page = httpx.get(url, cookies={"session": cookie}).text
    assert element(page, "logout-button") == "Log out ann@example.com"
    assert element(page, "message") == "Login successful", "the flash waited in the database"
