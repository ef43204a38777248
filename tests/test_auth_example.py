"""The auth example's whole story (SessionAuth, FlashPlugin, Jinja), in process and over real HTTP."""

from __future__ import annotations

import contextlib
import html
import importlib.util
import os
import re
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import httpx
import pytest
from litestar.exceptions import WebSocketDisconnect
from litestar.testing import TestClient

from examples.auth import DEFAULT_SQLITE_PATH, create_app
from tests.conftest import RecordingHandler
from tests.test_demo import serve_demo

ROOT = Path(__file__).parent.parent
DEMO_SETTINGS = (
    "SESSION_STORE",
    "SESSION_SQLITE_PATH",
    "SESSION_IDLE_TIMEOUT",
    "SESSION_ABSOLUTE_TIMEOUT",
    "SESSION_SECRET",
)
"""Settings of the caller's environment the demo must not see: the tests choose them."""
EMAIL = "<b>x</b>@example.com"
"""What a user types, markup included: it must come back escaped."""
ESCAPED = html.escape(EMAIL)

Hello = Callable[[Any], tuple[str, int | None]]
"""Open ``/ws`` as the client (its cookies), return the message and the close code."""


def require(module: str, install: str) -> None:
    """Skip when ``module`` is missing, with a clear reason; under ``CI=true`` fail instead."""
    if importlib.util.find_spec(module) is not None:
        return
    reason = f"{module} is not installed: {install}"
    if os.environ.get("CI") == "true":
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


def flashes(page: str) -> list[tuple[str, str]]:
    """The page's flash messages as ``(class, message)``, in order, as the HTML has them (escaped)."""
    match = re.search(r'<ul id="flashes">(.*?)</ul>', page, re.S)
    assert match is not None, "the page always has the list of flashes"
    return re.findall(r'<li class="([^"]*)">(.*?)</li>', match.group(1), re.S)


def user(page: str) -> str | None:
    """The HTML inside ``<span id="user">``, or None when nobody is logged in."""
    match = re.search(r'<span id="user">(.*?)</span>', page, re.S)
    return None if match is None else match.group(1)


def session_cookie(client: httpx.Client | TestClient[Any]) -> str | None:
    return client.cookies.get("session") or client.cookies.get("session_data")


def auth_story(client: httpx.Client | TestClient[Any], hello: Hello) -> None:
    page = client.get("/").text
    assert flashes(page) == []
    assert user(page) is None
    assert 'id="login-button"' in page
    assert client.get("/admin").status_code == 401, "SessionAuth: nobody logged in"
    assert hello(client) == ("hello anonymous", 1000)

    response = client.post("/login", data={"email": EMAIL, "password": "wrong"}, follow_redirects=False)
    assert response.status_code in (302, 303)
    assert response.headers["location"] == "/"
    page = client.get("/").text
    assert flashes(page) == [("flash flash-error", "Incorrect username or password")]
    assert user(page) is None
    assert flashes(client.get("/").text) == [], "the error is shown once"

    response = client.post("/login", data={"email": EMAIL, "password": "correct"}, follow_redirects=False)
    assert response.status_code in (302, 303)
    assert response.headers["location"] == "/"
    assert session_cookie(client) is not None
    page = client.get("/").text
    assert flashes(page) == [
        ("flash flash-success", "Login successful"),
        ("flash flash-info", f"Welcome back, {ESCAPED}"),
    ]
    assert user(page) == ESCAPED
    assert EMAIL not in page, "what users type is escaped"
    page = client.get("/").text  # reload
    assert flashes(page) == [], "the flashes are shown once"
    assert user(page) == ESCAPED

    response = client.get("/admin")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert response.text == f"Admin {EMAIL}"
    assert hello(client) == (f"hello {EMAIL}", 1000)

    logged_in = session_cookie(client)
    response = client.post("/logout", follow_redirects=False)
    assert response.status_code in (302, 303)
    assert response.headers["location"] == "/"
    assert session_cookie(client) != logged_in, "the old session is gone; the flash lives in a fresh one"
    page = client.get("/").text
    assert flashes(page) == [("flash flash-info", "Logged out")]
    assert user(page) is None
    assert 'id="login-button"' in page
    assert flashes(client.get("/").text) == [], "shown once"
    assert client.get("/admin").status_code == 401
    assert hello(client) == ("hello anonymous", 1000)


def hello_in_process(client: TestClient[Any]) -> tuple[str, int | None]:
    with client.websocket_connect("/ws") as ws:
        message = ws.receive_text()
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_text()
    return message, closed.value.code


@pytest.fixture
def sqlite_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for setting in DEMO_SETTINGS:
        monkeypatch.delenv(setting, raising=False)
    database = tmp_path / "auth-sessions.db"
    monkeypatch.setenv("SESSION_SQLITE_PATH", str(database))
    return database


@pytest.mark.parametrize("store", ["sqlite", "memory", "cookie"])
def test_auth_story_in_process(store: str, sqlite_path: Path) -> None:
    with TestClient(create_app(store), base_url="http://testserver.local") as client:
        auth_story(client, hello_in_process)
    assert sqlite_path.exists() == (store == "sqlite")


def test_the_default_store_is_sqlite_in_auth_sessions_db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for setting in DEMO_SETTINGS:
        monkeypatch.delenv(setting, raising=False)
    monkeypatch.chdir(tmp_path)
    assert DEFAULT_SQLITE_PATH == "auth-sessions.db"
    with TestClient(create_app(), base_url="http://testserver.local") as client:
        client.post("/login", data={"email": "ann@example.com", "password": "correct"})
    assert session_rows(tmp_path / "auth-sessions.db") == 1


def test_a_refused_visit_to_admin_sends_no_user_and_keeps_the_form(sqlite_path: Path) -> None:
    with TestClient(create_app("memory"), base_url="http://testserver.local") as client:
        response = client.get("/admin")
        assert response.status_code == 401
        assert "Admin" not in response.text
        page = client.get("/").text
    assert user(page) is None
    assert 'id="login-button"' in page


@pytest.mark.parametrize("email", ["", "a" * 257], ids=["empty", "over-256"])
def test_an_email_that_cannot_be_a_user_id_is_refused_with_400(sqlite_path: Path, email: str) -> None:
    with TestClient(create_app("memory"), base_url="http://testserver.local") as client:
        response = client.post("/login", data={"email": email, "password": "correct"})
        assert response.status_code == 400
        assert "email must be 1 to 256 characters" in response.text
        assert user(client.get("/").text) is None


def test_the_cookie_store_without_session_secret_seals_with_a_random_secret(
    sqlite_path: Path, session_log: RecordingHandler
) -> None:
    with TestClient(create_app("cookie"), base_url="http://testserver.local") as client:
        client.post("/login", data={"email": "ann@example.com", "password": "correct"})
        assert client.get("/admin").text == "Admin ann@example.com"
    assert "SESSION_SECRET is not set: sealing cookies with a random secret" in session_log.text
    with TestClient(create_app("cookie"), base_url="http://testserver.local", cookies=client.cookies) as other:
        assert other.get("/admin").status_code == 401, "another process's secret opens nothing"


def old_ids_story(client: httpx.Client | TestClient[Any]) -> None:
    """Logging in rotates the key: an id planted before login logs nobody in, nor the id of a
    session logged out of.
    """
    client.post("/login", data={"email": "ann@example.com", "password": "wrong"})
    planted = client.cookies["session"]
    client.post("/login", data={"email": "ann@example.com", "password": "correct"})
    logged_in = client.cookies["session"]
    assert logged_in != planted, "logging in rotates the key"
    assert client.get("/admin").text == "Admin ann@example.com"
    client.post("/logout")
    for old in (planted, logged_in):
        client.cookies.clear()
        client.cookies.set("session", old)
        assert client.get("/admin").status_code == 401
        page = client.get("/").text
        assert user(page) is None
        assert flashes(page) == []


@pytest.mark.parametrize("store", ["sqlite", "memory"])
def test_old_ids_log_nobody_in_in_process(store: str, sqlite_path: Path) -> None:
    with TestClient(create_app(store), base_url="http://testserver.local") as client:
        old_ids_story(client)


# --- over real HTTP: the script as its docstring serves it ------------------------------------


def serve_auth_demo(database: Path) -> AbstractContextManager[str]:
    """``python examples/auth.py`` on a free port, on its default store (SQLite) at ``database``."""
    return serve_demo(database, "examples/auth.py")


@pytest.fixture
def auth_server(tmp_path: Path) -> Iterator[str]:
    with serve_auth_demo(tmp_path / "auth-sessions.db") as url:
        yield url


def hello_over_http(base_url: str) -> Hello:
    from websockets.exceptions import ConnectionClosedOK
    from websockets.sync.client import connect

    def hello(client: httpx.Client) -> tuple[str, int | None]:
        cookie = "; ".join(f"{name}={value}" for name, value in client.cookies.items())
        headers = {"Cookie": cookie} if cookie else {}
        with connect(f"ws{base_url.removeprefix('http')}/ws", additional_headers=headers, open_timeout=5) as ws:
            message = ws.recv(timeout=5)
            with pytest.raises(ConnectionClosedOK):
                ws.recv(timeout=5)
            return str(message), ws.close_code

    return hello


def test_auth_story_over_http(auth_server: str, tmp_path: Path) -> None:
    require("websockets", "uvicorn serves /ws and the test opens it with it: pip install websockets")
    with httpx.Client(base_url=auth_server) as client:
        auth_story(client, hello_over_http(auth_server))
    assert session_rows(tmp_path / "auth-sessions.db") >= 1, "the sessions live in the SQLite file given"


def test_old_ids_log_nobody_in_over_http(auth_server: str) -> None:
    with httpx.Client(base_url=auth_server) as client:
        old_ids_story(client)


def session_rows(database: Path) -> int:
    """The sessions' rows (a user's index of sessions is a row of its own, keyed ``user-...``)."""
    with sqlite3.connect(database) as connection:
        return int(connection.execute("SELECT COUNT(*) FROM sessions WHERE id NOT LIKE 'user-%'").fetchone()[0])


def test_pending_flashes_and_the_login_survive_a_restart(tmp_path: Path) -> None:
    database = tmp_path / "auth-sessions.db"
    with serve_auth_demo(database) as url:
        response = httpx.post(f"{url}/login", data={"email": EMAIL, "password": "correct"})
        cookie = response.cookies["session"]
    with serve_auth_demo(database) as url:
        page = httpx.get(url, cookies={"session": cookie}).text
        admin = httpx.get(f"{url}/admin", cookies={"session": cookie})
    assert flashes(page) == [
        ("flash flash-success", "Login successful"),
        ("flash flash-info", f"Welcome back, {ESCAPED}"),
    ], "the flashes waited in the database"
    assert user(page) == ESCAPED
    assert admin.text == f"Admin {EMAIL}"


def devices_story(make_client: Callable[[str], AbstractContextManager[Any]]) -> None:
    """Three devices of one user: the list, revoking one, then all the others."""
    with make_client("Laptop/1") as laptop, make_client("Phone/2") as phone, make_client("Tablet/3") as tablet:
        assert laptop.get("/sessions").status_code == 401, "nobody logged in yet"
        for device in (laptop, phone, tablet):
            device.post("/login", data={"email": EMAIL, "password": "correct"})
        listed = laptop.get("/sessions").json()
        assert [(item["current"], item["user_agent"]) for item in listed] == [
            (True, "Laptop/1"),
            (False, "Phone/2"),
            (False, "Tablet/3"),
        ]
        for item in listed:
            assert set(item) == {"handle", "current", "created_at", "last_seen", "user_agent"}
            assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?\+00:00", item["created_at"])
        handles = {item["user_agent"]: item["handle"] for item in listed}
        assert laptop.post(f"/sessions/{handles['Phone/2']}/revoke").status_code == 204
        assert phone.get("/admin").status_code == 401, "the revoked device is anonymous"
        assert laptop.post("/sessions/not-a-handle/revoke").status_code == 404
        assert phone.post(f"/sessions/{handles['Tablet/3']}/revoke").status_code == 401
        assert tablet.get("/admin").status_code == 200
        assert laptop.post("/sessions/revoke-others").status_code == 204
        assert tablet.get("/admin").status_code == 401
        assert laptop.get("/admin").text == f"Admin {EMAIL}"
        assert [item["user_agent"] for item in laptop.get("/sessions").json()] == ["Laptop/1"]


class Device:
    """One browser on a shared ``TestClient``: its own cookies and user agent."""

    def __init__(self, client: TestClient[Any], agent: str) -> None:
        self.client, self.agent, self.cookies = client, agent, httpx.Cookies()

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        self.client.cookies = self.cookies
        try:
            return self.client.request(method, url, headers={"user-agent": self.agent}, **kwargs)
        finally:
            self.cookies = self.client.cookies

    def get(self, url: str) -> httpx.Response:
        return self.request("GET", url)

    def post(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", url, **kwargs)


@pytest.mark.parametrize("store", ["sqlite", "memory"])
def test_devices_in_process(store: str, sqlite_path: Path) -> None:
    with TestClient(create_app(store), base_url="http://testserver.local") as client:
        devices_story(lambda agent: contextlib.nullcontext(Device(client, agent)))


def test_devices_over_http(auth_server: str) -> None:
    devices_story(lambda agent: httpx.Client(base_url=auth_server, headers={"user-agent": agent}))


def test_the_cookie_store_has_no_device_list(sqlite_path: Path) -> None:
    with TestClient(create_app("cookie"), base_url="http://testserver.local") as client:
        client.post("/login", data={"email": EMAIL, "password": "correct"})
        assert client.get("/admin").status_code == 200
        response = client.get("/sessions")
        assert response.status_code == 501
        assert "keeps each session in its browser" in response.text
