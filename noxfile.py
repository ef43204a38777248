"""Developer tasks: `nox -s tests`, `nox -s lint`, `nox -s typecheck`, `nox -s demo`, `nox -s bench`,
`nox -s bench_http`, `nox -s bench_scale`."""

from __future__ import annotations

import os

import nox

nox.options.sessions = ["tests", "lint", "typecheck"]
nox.options.default_venv_backend = "venv"

SOURCES = ["litestar_flash_sessions", "tests", "examples", "benchmarks", "noxfile.py"]


def run_with_servers(session: nox.Session, extra: str, *command: str) -> None:
    """Install the extra, start the test servers (scripts/servers.sh), run the command with their
    URLs in the environment, and stop the servers again unless KEEP_SERVERS=1."""
    session.install("-e", f".[{extra}]")
    lines = session.run("scripts/servers.sh", "start", external=True, silent=True)
    env = dict(line.removeprefix("export ").split("=", 1) for line in str(lines).splitlines() if "=" in line)
    try:
        session.run(*command, *session.posargs, env=env)
    finally:
        if os.environ.get("KEEP_SERVERS") != "1":
            session.run("scripts/servers.sh", "stop", external=True)


@nox.session
def tests(session: nox.Session) -> None:
    """The whole suite against real servers (started and stopped by scripts/servers.sh)."""
    run_with_servers(session, "test", "pytest")


@nox.session
def lint(session: nox.Session) -> None:
    """Ruff: lint and format check."""
    session.install("ruff")
    session.run("ruff", "check", *SOURCES)
    session.run("ruff", "format", "--check", *SOURCES)


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy --strict on the package."""
    session.install("-e", ".[test]", "mypy")
    session.run("mypy")


@nox.session
def demo(session: nox.Session) -> None:
    """Serve the login demo on http://127.0.0.1:8002 (SQLite store; `-- --store redis` to change)."""
    session.install("-e", ".[demo]")
    session.run("python", "examples/login.py", *session.posargs)


@nox.session
def bench(session: nox.Session) -> None:
    """The in-process benchmark: microseconds per request and ratios, all cases in one run."""
    session.install("-e", ".[bench]")
    session.run("python", "-m", "benchmarks.bench", *session.posargs)


@nox.session
def bench_http(session: nox.Session) -> None:
    """The login demo over HTTP (granian + wrk) on Redis, PostgreSQL, no sessions and Litestar's own.

    Needs wrk (`apt-get install -y wrk`). `nox -s bench_http -- --quick` for a smoke run; KEEP_SERVERS=1
    leaves the servers running.
    """
    run_with_servers(session, "bench", "python", "-m", "benchmarks.http_load")


@nox.session
def bench_scale(session: nox.Session) -> None:
    """1,000 vs 1,000,000 stored sessions, MemoryStore bytes per session, cleanup under load.

    `nox -s bench_scale -- --quick` for a smoke run; KEEP_SERVERS=1 leaves the servers running.
    """
    run_with_servers(session, "bench", "python", "-m", "benchmarks.scale")
