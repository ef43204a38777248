"""One client's session goes on across requests answered by different worker processes."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.faults import free_port
from tests.test_demo import element

ROOT = Path(__file__).parent.parent


@pytest.fixture(params=["redis", "postgres"])
def two_workers(request: pytest.FixtureRequest) -> Iterator[str]:
    store = request.param
    server = request.getfixturevalue(f"{store}_url")
    port = free_port()
    process = subprocess.Popen(  # the demo, two worker processes sharing one socket
        [sys.executable, "-m", "uvicorn", "tests.served_demo:app", "--workers", "2", "--port", str(port)],
        cwd=ROOT,
        env={**os.environ, "SESSION_STORE": store, f"{store.upper()}_URL": server},
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        workers: set[str] = set()
        while len(workers) < 2:  # wait until both workers answer
            try:
                workers.add(httpx.get(url, headers={"connection": "close"}, timeout=2).headers["x-worker-pid"])
            except httpx.TransportError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise
                time.sleep(0.05)
            assert time.monotonic() < deadline, "the second worker never answered"
        yield url
    finally:
        process.terminate()
        process.wait(20)


def test_session_is_shared_by_worker_processes(two_workers: str) -> None:
    workers_seen: set[str] = set()
    handed_over = 0  # a change made by one worker, then read by the other
    with httpx.Client(base_url=two_workers, headers={"connection": "close"}) as client:
        attempt = 0
        # Each request on a new connection, so either worker may answer; go on until a change
        # made by one worker was read by the other (the kernel need not alternate).
        while attempt < 20 or (not handed_over and attempt < 300):
            attempt += 1
            response = client.post("/login", data={"email": "ann@example.com", "password": "wrong"})
            assert response.status_code == 302
            page = client.get("/")
            writer, reader = response.headers["x-worker-pid"], page.headers["x-worker-pid"]
            workers_seen.update((writer, reader))
            handed_over += writer != reader
            assert element(page.text, "failed-login-attempts") == f"Failed login attempts: {attempt}"
            assert element(page.text, "error") == "Incorrect username or password"
        client.post("/login", data={"email": "ann@example.com", "password": "correct"})
        page = client.get("/")
        assert element(page.text, "message") == "Login successful"
        assert element(page.text, "logout-button") == "Log out ann@example.com"
    assert len(workers_seen) == 2, "the requests were answered by both workers"
    assert handed_over, "a session changed in one worker process was read in the other"
