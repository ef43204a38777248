"""The project's one task runner. ``scripts/nox`` bootstraps it on a fresh machine (a venv with nox
in it, ``.venv``), then runs it:

    scripts/nox -s demo            serve the login demo on http://127.0.0.1:8002 (-- --store redis)
    scripts/nox -s tests           the whole suite; the suite starts the servers it needs
    scripts/nox -s check           ruff (lint and format) and mypy --strict
    scripts/nox -s docs            the documentation site into site/ (mkdocs build --strict)
    scripts/nox -s screenshots     the site, then screenshots of its pages into docs-screenshots/
    scripts/nox -s wheel           build the sdist and the wheel, serve the demo from the installed wheel
    scripts/nox -s bench           every benchmark (-- --quick: a smoke run)

Arguments after ``--`` go to the task (``scripts/nox -s tests -- -k redis``).

Every session runs in one venv, ``.venv`` (``venv_backend="none"``: nox makes none of its own),
into which the session installs the project with the extras it needs, skipped when the extras
and pyproject.toml have not changed since the last install: so CI's five sessions install once
and a second run starts at once. As root, a session installs the Debian packages it needs
(``apt-get update`` once, and only for what is missing); as another user, it says what to install.
"""

from __future__ import annotations

import hashlib
import http.cookiejar
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
import zipfile
from pathlib import Path
from typing import Any

import nox

nox.options.sessions = ["check", "tests"]
nox.options.error_on_external_run = False

ROOT = Path(__file__).parent
VENV = Path(os.environ.get("VENV") or ROOT / ".venv")
PYTHON = VENV / "bin" / "python"
LINTED = ["litestar_flash_sessions", "tests", "examples", "benchmarks", "noxfile.py", "scripts", "docs/_griffe"]

DEBIAN_PACKAGES = {
    # binary the suite looks for: the package that has it
    "redis-server": "redis-server",
    "redis-cli": "redis-server",
    "redis-sentinel": "redis-sentinel",
    "webdis": "webdis",
    "chromium": "chromium",
    "wrk": "wrk",
}
_apt_updated = False


def apt_install(session: nox.Session, *binaries: str) -> None:
    """Install the Debian packages of the ``binaries`` missing from the PATH (``initdb``: PostgreSQL)."""
    global _apt_updated  # noqa: PLW0603 (one apt-get update per nox run)
    missing = [name for name in binaries if not _have(name)]
    packages = sorted({"postgresql-15" if name == "initdb" else DEBIAN_PACKAGES[name] for name in missing})
    if not packages:
        return
    if os.geteuid() != 0:
        session.warn(f"not root: install {' '.join(packages)} yourself (their tests are skipped meanwhile)")
        return
    env = {"DEBIAN_FRONTEND": "noninteractive"}
    if not _apt_updated:
        session.run("apt-get", "update", "-qq", external=True, env=env)
        _apt_updated = True
    session.run("apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages, external=True, env=env)


def _have(binary: str) -> bool:
    if binary == "initdb":
        return bool(list(Path("/usr/lib/postgresql").glob("*/bin/initdb"))) or shutil.which("initdb") is not None
    return shutil.which(binary) is not None


def setup(session: nox.Session, extras: str) -> None:
    """Make ``.venv`` if missing and install the project (editable) with ``extras`` into it, unless
    an install with the same extras and the same pyproject.toml is already there."""
    if not PYTHON.exists():
        session.run(sys.executable, "-m", "venv", str(VENV), external=True)
    stamp = VENV / f".lfs-installed-{extras.replace(',', '-')}"
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if stamp.exists() and stamp.read_text() == digest:
        return
    pip = [str(PYTHON), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    session.run(*pip, "-e", f"{ROOT}[{extras}]", external=True, silent=True)
    stamp.write_text(digest)


def python(session: nox.Session, *args: str, **kwargs: Any) -> None:
    """Run ``.venv``'s Python with ``args``."""
    session.run(str(PYTHON), *args, external=True, **kwargs)


@nox.session(venv_backend="none")
def demo(session: nox.Session) -> None:
    """Serve the login demo on http://127.0.0.1:8002 (SQLite store; ``-- --store redis`` to change)."""
    setup(session, "demo")
    python(session, "examples/login.py", *session.posargs)


@nox.session(venv_backend="none")
def tests(session: nox.Session) -> None:
    """The whole suite against real servers, which its fixtures start (tests/servers.py)."""
    setup(session, "test")
    apt_install(session, "redis-server", "redis-cli", "redis-sentinel", "webdis", "initdb", "chromium")
    python(session, "-m", "tests.servers", "install")  # the Mongo-wire server's and Valkey's venvs
    python(session, "-m", "pytest", *session.posargs)


@nox.session(venv_backend="none")
def check(session: nox.Session) -> None:
    """Ruff (lint and format) and mypy --strict."""
    setup(session, "test,lint")
    python(session, "-m", "ruff", "check", *LINTED)
    python(session, "-m", "ruff", "format", "--check", *LINTED)
    python(session, "-m", "mypy")


@nox.session(venv_backend="none")
def bench(session: nox.Session) -> None:
    """Every benchmark (docs/benchmarks.md); ``-- --quick`` for a smoke run."""
    setup(session, "bench")
    apt_install(session, "wrk", "redis-server", "redis-cli", "webdis", "initdb")
    python(session, "-m", "tests.servers", "install")
    if "--quick" in session.posargs:
        python(session, "-m", "benchmarks.bench", "--rounds", "2", "--requests", "100")
        python(session, "-m", "benchmarks.ablation", "--rounds", "2", "--requests", "50")
        python(session, "-m", "benchmarks.profile", "--requests", "200", stdout=subprocess.DEVNULL)
    else:
        python(session, "-m", "benchmarks.bench")
    # The HTTP and scale benchmarks run against servers started as the suite's are.
    for benchmark in ("benchmarks.http_load", "benchmarks.scale"):
        python(session, "-m", "tests.servers", "run", str(PYTHON), "-m", benchmark, *session.posargs)


def build_docs(session: nox.Session, *args: str) -> None:
    setup(session, "docs")
    python(session, "-m", "mkdocs", "build", "--strict", *args, env={"NO_MKDOCS_2_WARNING": "1"})
    site = ROOT / "site"
    if site.is_dir():  # the built site is never committed (mkdocs keeps dotfiles)
        (site / ".gitignore").write_text("*\n")


@nox.session(venv_backend="none")
def docs(session: nox.Session) -> None:
    """The documentation site, built with ``mkdocs build --strict`` into site/."""
    build_docs(session, *session.posargs)


@nox.session(venv_backend="none")
def screenshots(session: nox.Session) -> None:
    """Build the site, then screenshot its pages into docs-screenshots/ with Debian's chromium."""
    build_docs(session)
    apt_install(session, "chromium")
    # Playwright drives /usr/bin/chromium: never `playwright install` (it downloads a browser).
    if subprocess.run([str(PYTHON), "-c", "import playwright"], capture_output=True, check=False).returncode:
        python(session, "-m", "pip", "install", "-q", "--disable-pip-version-check", "playwright")
    python(session, "scripts/screenshots.py", *session.posargs)


@nox.session(venv_backend="none")
def wheel(session: nox.Session) -> None:
    """Build the sdist and the wheel, install the wheel (not the checkout) into a fresh venv and serve
    the login demo from it: what a user gets from ``pip install litestar-flash-sessions``.

    The wheel is built from the sdist (a file missing from the sdist fails here too) and must hold
    py.typed and only the package. From a temporary folder (``python -I``: nothing of the checkout
    on sys.path) the installed package serves examples/login.py on a free port, and GET / (the
    login form), a login (redirect, cookie) and the page after it (the flash) are checked.
    """
    setup(session, "docs")  # `build` is in the docs extra
    dist = ROOT / "dist"
    for old in dist.glob("litestar_flash_sessions-*"):
        old.unlink()
    python(session, "-m", "build", "--outdir", str(dist), str(ROOT), silent=True)
    (built_wheel,) = dist.glob("litestar_flash_sessions-*-py3-none-any.whl")
    (sdist,) = dist.glob("litestar_flash_sessions-*.tar.gz")
    sizes = ", ".join(f"{path.name} ({path.stat().st_size // 1024} KB)" for path in (sdist, built_wheel))
    session.log(sizes)
    names = zipfile.ZipFile(built_wheel).namelist()
    extra = {name.split("/", 1)[0] for name in names if not name.startswith("litestar_flash_sessions")}
    if extra:
        session.error(f"the wheel holds more than the package: {sorted(extra)}")
    for needed in ("litestar_flash_sessions/py.typed", "litestar_flash_sessions/stores/redis.py"):
        if needed not in names:
            session.error(f"the wheel lacks {needed}")

    with tempfile.TemporaryDirectory(prefix="check-wheel-") as work:
        venv = Path(work) / "venv"
        # A venv made from .venv's interpreter is based on the same base one (no python3-venv again).
        session.run(str(PYTHON), "-m", "venv", str(venv), external=True)
        installed = venv / "bin" / "python"
        pip = [str(installed), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
        session.run(*pip, f"{built_wheel}[all]", "uvicorn", external=True, silent=True)
        where = "import litestar_flash_sessions; print(litestar_flash_sessions.__file__)"
        location = subprocess.run([installed, "-I", "-c", where], cwd=work, capture_output=True, text=True, check=True)
        if not location.stdout.strip().startswith(str(venv)):
            session.error(f"litestar_flash_sessions resolves to {location.stdout.strip()}, not to the wheel in {venv}")
        session.log(f"litestar_flash_sessions: {location.stdout.strip()}")
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        log = Path(work) / "demo.log"
        command = [installed, "-I", ROOT / "examples" / "login.py", "--store", "sqlite", "--port", str(port)]
        with log.open("wb") as output:
            server = subprocess.Popen(command, cwd=work, stdout=output, stderr=subprocess.STDOUT)
        try:
            _check_demo(session, f"http://127.0.0.1:{port}", server)
        except (AssertionError, OSError) as exc:
            session.error(f"the demo served from the wheel failed: {exc}\n{log.read_text(errors='replace')}")
        finally:
            server.terminate()
            server.wait(15)
    session.log("the wheel works")


def _check_demo(session: nox.Session, base: str, server: subprocess.Popen[bytes]) -> None:
    """GET / is the login page; a login redirects to / with the flash and the logout button."""
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
    deadline = time.monotonic() + 30
    while True:
        try:
            response = opener.open(base + "/", timeout=5)
            break
        except OSError:
            if time.monotonic() > deadline or server.poll() is not None:
                raise
            time.sleep(0.1)
    page = response.read().decode()
    assert response.status == 200, f"GET / answered {response.status}"
    assert '<form id="login"' in page, f"GET / is not the login page:\n{page}"
    session.log("GET / -> 200, the login page")
    form = urllib.parse.urlencode({"email": "ann@example.com", "password": "correct"}).encode()
    response = opener.open(base + "/login", data=form, timeout=5)  # follows the redirect to /
    page = response.read().decode()
    assert response.status == 200, response.status
    assert response.url == base + "/", response.url
    assert "Login successful" in page, f"no flash after the login:\n{page}"
    assert "Log out ann@example.com" in page, f"not logged in:\n{page}"
    session.log("POST /login -> redirect -> GET / -> 200, 'Login successful', the logout button")
