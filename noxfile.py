"""The same tasks as ``scripts/dev.sh``, for nox users: each session runs the script's task, so
there is one implementation of each (the script), whichever way it is started.

`nox -s tests`, `nox -s check`, `nox -s docs`, `nox -s wheel`, `nox -s demo`, `nox -s bench`.
Arguments after ``--`` go to the task (``nox -s tests -- -k redis``).
"""

from __future__ import annotations

import nox

nox.options.sessions = ["check", "tests"]


def _task(session: nox.Session, task: str) -> None:
    session.run("scripts/dev.sh", task, *session.posargs, external=True)


@nox.session(venv_backend="none")
def tests(session: nox.Session) -> None:
    """The whole suite against real servers (the suite starts and stops them)."""
    _task(session, "test")


@nox.session(venv_backend="none")
def check(session: nox.Session) -> None:
    """Ruff (lint and format) and mypy --strict."""
    _task(session, "check")


@nox.session(venv_backend="none")
def docs(session: nox.Session) -> None:
    """The documentation site, built with ``mkdocs build --strict`` into site/."""
    _task(session, "docs")


@nox.session(venv_backend="none")
def wheel(session: nox.Session) -> None:
    """Build the sdist and the wheel, install the wheel into a clean venv and serve the demo from it."""
    _task(session, "wheel")


@nox.session(venv_backend="none")
def demo(session: nox.Session) -> None:
    """Serve the login demo on http://127.0.0.1:8002 (SQLite store; `-- --store redis` to change)."""
    _task(session, "demo")


@nox.session(venv_backend="none")
def bench(session: nox.Session) -> None:
    """Every benchmark (`-- --quick` for a smoke run)."""
    _task(session, "bench")
