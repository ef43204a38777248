"""Developer tasks: `nox -s tests`, `nox -s lint`, `nox -s typecheck`, `nox -s demo`."""

from __future__ import annotations

import nox

nox.options.sessions = ["tests", "lint", "typecheck"]
nox.options.default_venv_backend = "venv"

SOURCES = ["litestar_flash_sessions", "tests", "examples", "benchmarks", "noxfile.py"]


@nox.session
def tests(session: nox.Session) -> None:
    """The whole suite against real servers (started and stopped by scripts/servers.sh)."""
    session.install("-e", ".[test]")
    env_lines = session.run("scripts/servers.sh", "start", external=True, silent=True)
    env = dict(line.removeprefix("export ").split("=", 1) for line in str(env_lines).splitlines() if "=" in line)
    try:
        session.run("pytest", *session.posargs, env=env)
    finally:
        session.run("scripts/servers.sh", "stop", external=True)


@nox.session
def lint(session: nox.Session) -> None:
    """Ruff: lint and format check."""
    session.install("ruff")
    session.run("ruff", "check", *SOURCES)
    session.run("ruff", "format", "--check", *SOURCES)


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy --strict on the package."""
    session.install("-e", ".[all]", "mypy")
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
