"""``litestar sessions``: the CLI the plugin adds to Litestar's, run as a user runs it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from litestar.testing import TestClient

from examples.auth import create_app

ROOT = Path(__file__).parent.parent
EMAIL = "ann@example.com"


def litestar(database: Path, *args: str, store: str = "sqlite") -> subprocess.CompletedProcess[str]:
    """Run ``litestar --app examples.auth:app ARGS`` with the demo on ``store``."""
    env = {
        **os.environ,
        "SESSION_STORE": store,
        "SESSION_SQLITE_PATH": str(database),
        "PYTHONPATH": str(ROOT),
    }
    command = [sys.executable, "-m", "litestar", "--app", "examples.auth:app", *args]
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False)


@pytest.fixture
def database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "sessions.db"
    monkeypatch.setenv("SESSION_SQLITE_PATH", str(path))
    return path


def log_in(database: Path, agents: list[str]) -> list[TestClient[object]]:
    clients = []
    for agent in agents:
        client = TestClient(create_app("sqlite"), base_url="http://testserver.local")
        client.headers["user-agent"] = agent
        with client:
            client.post("/login", data={"email": EMAIL, "password": "correct"})
        clients.append(client)
    return clients


def test_list_and_revoke_from_the_shell(database: Path) -> None:
    log_in(database, ["Laptop/1", "Phone/2"])
    listed = litestar(database, "sessions", "list", EMAIL)
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert [line.split("\t")[-1] for line in lines] == ['user_agent="Laptop/1"', 'user_agent="Phone/2"']
    laptop = lines[0].split("\t")[0]

    revoked = litestar(database, "sessions", "revoke", EMAIL, "--keep", laptop)
    assert revoked.returncode == 0, revoked.stderr
    assert revoked.stdout.strip() == f"revoked 1 session of {EMAIL}"
    assert [line.split("\t")[0] for line in litestar(database, "sessions", "list", EMAIL).stdout.splitlines()] == [
        laptop
    ]

    assert litestar(database, "sessions", "revoke", EMAIL).stdout.strip() == f"revoked 1 session of {EMAIL}"
    empty = litestar(database, "sessions", "list", EMAIL)
    assert empty.stdout == ""
    assert f"no live sessions for {EMAIL}" in empty.stderr


def test_clear_expired(database: Path) -> None:
    log_in(database, ["Laptop/1"])
    cleared = litestar(database, "sessions", "clear-expired")
    assert cleared.returncode == 0, cleared.stderr
    assert cleared.stdout.strip() == "deleted 0 expired sessions"


def test_the_cookie_store_says_it_cannot(database: Path) -> None:
    refused = litestar(database, "sessions", "list", EMAIL, store="cookie")
    assert refused.returncode == 1
    assert "keeps each session in its browser" in refused.stderr


def test_a_listing_escapes_what_the_client_sent_and_a_user_that_is_not_text_is_refused(database: Path) -> None:
    log_in(database, ['Evil\tforged column\x1b[2J\x7f" forged="field\\'])
    listed = litestar(database, "sessions", "list", EMAIL)
    assert listed.returncode == 0, listed.stderr
    [line] = listed.stdout.splitlines()
    assert line.split("\t")[-1] == 'user_agent="Evil\\tforged column\\x1b[2J\\x7f\\" forged=\\"field\\\\"'
    refused = litestar(database, "sessions", "list", "\udcff")  # the byte 0xff in argv
    assert refused.returncode == 1
    assert "UTF-8" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_a_listing_escapes_bidirectional_and_other_invisible_characters() -> None:
    # A device_info built from anything but a header (a form field, a client hint) may hold any
    # character: none may reorder or hide what the terminal shows.
    from litestar_flash_sessions.cli import _printable

    assert _printable("a\u202eb\u200bc\u2028d\xa0e f") == "a\\u202eb\\u200bc\\u2028d\\xa0e f"
