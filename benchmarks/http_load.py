"""HTTP benchmark: the login demo's page under load, served by granian and loaded with wrk.

Run it with ``scripts/nox -s bench`` or ``python -m tests.servers run python -m benchmarks.http_load
[--duration S] [--connections N] [--workers N] [--quick] [--json PATH]`` (which starts the test
servers as the suite does and puts their URLs in the environment; ``REDIS_URL`` and
``POSTGRES_URL`` of servers of your own work too).

Each case is served in turn by one granian worker (``granian --interface asgi --workers 1``;
``--workers N`` for more) on a free loopback port. The script logs in over HTTP first
(``POST /login``, then one ``GET /`` that shows the flash), so that every measured request
carries a logged-in session cookie, then runs ``wrk -t1 -cN -dS --latency -H 'Cookie: ...'`` on
``GET /`` after a one-second warm-up, and logs out at the end (which deletes the session). Cases:

* ``ours RedisStore`` / ``ours PostgresStore``: ``examples.login:app`` with ``SESSION_STORE``
  set; the page reads the session (one store read, no write: nothing changes);
* ``no sessions``: ``benchmarks.apps:no_sessions``, the same page from constants;
* ``litestar ServerSideSessionConfig``: ``benchmarks.apps:builtin``, Litestar's own server-side
  sessions on Litestar's RedisStore, same Redis, same page, same reads (Litestar's middleware
  writes the session back on every response).

wrk, granian, the app and the database share the machine: rps and latencies say how the cases
compare on one box, not what a server can do. "server CPU us/req" is the CPU time granian's
processes used during the measured run (user + system, from ``/proc``) over the requests served:
what a request costs the server, which moves far less than rps when other work shares the cores.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
LOGIN_FORM = urlencode({"email": "ann@example.com", "password": "correct"})
LOGGED_IN = b"Log out ann@example.com"


@dataclass(frozen=True)
class Case:
    """One app to serve: a granian target, extra environment, and whether it has a login."""

    target: str
    env: dict[str, str] = field(default_factory=dict)
    login: bool = True


CASES = {
    "ours RedisStore": Case("examples.login:app", {"SESSION_STORE": "redis"}),
    "ours PostgresStore": Case("examples.login:app", {"SESSION_STORE": "postgres"}),
    "no sessions": Case("benchmarks.apps:no_sessions", login=False),
    "litestar ServerSideSessionConfig": Case("benchmarks.apps:builtin"),
}


# ---------------------------------------------------------------- environment


def server_env() -> dict[str, str]:
    """The test servers' URLs, from the environment (``python -m tests.servers run`` sets them)."""
    names = ("REDIS_URL", "POSTGRES_URL")
    env = {name: os.environ[name] for name in names if os.environ.get(name)}
    if len(env) < len(names):
        raise SystemExit(
            "REDIS_URL and POSTGRES_URL are not set: run this under `python -m tests.servers run`, "
            "which starts the servers (or set them to servers of your own)"
        )
    return env


def machine_info() -> dict[str, Any]:
    """CPU, core count, Python and library versions, for the JSON results."""
    from importlib.metadata import version

    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    info: dict[str, Any] = {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version()}
    for package in ("litestar", "litestar-flash-sessions", "granian", "redis", "asyncpg", "aiosqlite", "msgspec"):
        with contextlib.suppress(Exception):
            info[package] = version(package)
    with contextlib.suppress(OSError):
        info["load_average"] = os.getloadavg()
    return info


def warn_if_busy() -> None:
    """Say so when the machine is not quiet (1-minute load average of 1 or more)."""
    with contextlib.suppress(OSError):
        load = os.getloadavg()[0]
        if load >= 1:
            print(f"!! load average {load:.2f}: the machine is busy, the numbers will be too", flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


# ---------------------------------------------------------------- the server


def server_cpu_seconds(group: int) -> float:
    """CPU seconds (user + system) used so far by the processes of the server's process group:
    granian's main process and its workers, Python and granian's own threads alike.
    """
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) == group:  # field 5, the process group (after the name, field 2)
                total += int(fields[11]) + int(fields[12])  # fields 14 and 15: utime, stime
    return total / ticks


@dataclass
class Served:
    """A running server: its port and its process group (for :func:`server_cpu_seconds`)."""

    port: int
    group: int


@contextlib.contextmanager
def serve(case: Case, env: dict[str, str], log: Path, workers: int = 1) -> Iterator[Served]:
    """Run granian on ``case.target`` (``workers`` processes) and yield it once it answers."""
    port = free_port()
    command = [
        sys.executable,  # this interpreter's granian, not whichever is first on PATH
        "-m",
        "granian",
        "--interface",
        "asgi",
        "--host",
        HOST,
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--no-ws",
        "--log-level",
        "warning",
        case.target,
    ]
    with log.open("ab") as out:
        process = subprocess.Popen(  # noqa: S603 (our own command line)
            command,
            cwd=ROOT,
            env={**os.environ, **env, **case.env, "PYTHONPATH": str(ROOT)},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_until_up(port, process, log)
        yield Served(port, process.pid)  # start_new_session: the group's id is the process's
    finally:
        stop(process)


def wait_until_up(port: int, process: subprocess.Popen[bytes], log: Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"granian exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        with contextlib.suppress(OSError, http.client.HTTPException):
            status, _, _ = request(port, "GET", "/")
            if status == 200:
                return
        time.sleep(0.1)
    raise RuntimeError(f"granian did not answer on :{port} within {timeout:.0f}s:\n{log.read_text()[-3000:]}")


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGINT the server's process group (granian shuts its worker down), then kill if it lingers."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGINT)
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(5)


# ---------------------------------------------------------------- HTTP client


def request(
    port: int, method: str, path: str, cookie: str = "", body: str | None = None
) -> tuple[int, list[tuple[str, str]], bytes]:
    """One request, no redirect followed: status, headers and body."""
    connection = http.client.HTTPConnection(HOST, port, timeout=10)
    headers = {"Cookie": cookie} if cookie else {}
    if body is not None:
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    try:
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        return response.status, response.getheaders(), response.read()
    finally:
        connection.close()


def merge_cookies(cookie: str, headers: list[tuple[str, str]]) -> str:
    """Apply the response's ``Set-Cookie`` headers to a ``Cookie`` header value."""
    jar = dict(part.split("=", 1) for part in cookie.split("; ") if "=" in part)
    for name, value in headers:
        if name.lower() == "set-cookie":
            key, _, rest = value.split(";", 1)[0].partition("=")
            if "max-age=0" in value.lower() or "expires=thu, 01 jan 1970" in value.lower():
                jar.pop(key, None)
            else:
                jar[key] = rest
    return "; ".join(f"{key}={value}" for key, value in jar.items())


def log_in(port: int) -> tuple[str, bytes]:
    """Log in, then load the page once (showing the flash); return the cookie and the page."""
    status, headers, _ = request(port, "POST", "/login", body=LOGIN_FORM)
    if status not in (301, 302, 303, 307):
        raise RuntimeError(f"POST /login answered {status}")
    cookie = merge_cookies("", headers)
    if not cookie:
        raise RuntimeError("POST /login set no cookie")
    for _ in range(2):  # the first page consumes the login flash; the second is the steady state
        status, headers, page = request(port, "GET", "/", cookie)
        if status != 200 or LOGGED_IN not in page:
            raise RuntimeError(f"GET / after login answered {status} without the logged-in page")
        cookie = merge_cookies(cookie, headers)
    return cookie, page


def log_out(port: int, cookie: str) -> None:
    """Delete the session again (the demo and the builtin app both have ``POST /logout``)."""
    request(port, "POST", "/logout", cookie)


# ---------------------------------------------------------------- wrk


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}
_PERCENTILE = re.compile(r"^\s*(50|99)(?:\.0+)?%\s+([\d.]+)(us|ms|s|m)\s*$", re.MULTILINE)


def parse_wrk(output: str) -> dict[str, float]:
    """Requests per second, p50 and p99 in milliseconds, request and error counts from wrk --latency."""
    rps = re.search(r"^Requests/sec:\s+([\d.]+)", output, re.MULTILINE)
    total = re.search(r"^\s*(\d+) requests in", output, re.MULTILINE)
    if rps is None or total is None:
        raise RuntimeError(f"cannot parse wrk's output:\n{output}")
    percentiles = {int(p): float(value) * _UNITS[unit] for p, value, unit in _PERCENTILE.findall(output)}
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    sockets = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    return {
        "rps": float(rps.group(1)),
        "p50_ms": percentiles[50],
        "p99_ms": percentiles[99],
        "requests": int(total.group(1)),
        "non_2xx": int(non_2xx.group(1)) if non_2xx else 0,
        "socket_errors": sum(int(n) for n in sockets.groups()) if sockets else 0,
    }


def wrk(port: int, cookie: str, connections: int, duration: int) -> dict[str, float]:
    command = ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency", "--timeout", "5s"]
    if cookie:
        command += ["-H", f"Cookie: {cookie}"]
    command.append(f"http://{HOST}:{port}/")
    result = subprocess.run(command, capture_output=True, text=True, check=True, timeout=duration + 30)  # noqa: S603
    return parse_wrk(result.stdout)


# ---------------------------------------------------------------- main


def postgres_table_exists(url: str) -> bool | None:
    """Whether the demo's ``sessions`` table exists (``None``: cannot tell)."""
    import asyncio

    async def check() -> bool:
        import asyncpg

        connection = await asyncpg.connect(url, timeout=5)
        try:
            return bool(await connection.fetchval("SELECT to_regclass('public.sessions') IS NOT NULL"))
        finally:
            await connection.close()

    try:
        return asyncio.run(check())
    except Exception:  # a convenience: leave the table if unsure
        return None


def drop_empty_demo_table(url: str) -> None:
    """Drop the demo's ``sessions`` table again when this run created it and left it empty."""
    import asyncio

    async def drop() -> None:
        import asyncpg

        connection = await asyncpg.connect(url, timeout=5)
        try:
            if not await connection.fetchval("SELECT count(*) FROM sessions"):
                await connection.execute("DROP TABLE sessions")
        finally:
            await connection.close()

    asyncio.run(drop())


def delete_builtin_keys(url: str) -> int:
    """Delete the built-in sessions' keys: Litestar stores a ``{}`` record even for a visitor with no session."""
    from redis import Redis

    from benchmarks.apps import BUILTIN_NAMESPACE

    client = Redis.from_url(url)
    try:
        keys = list(client.scan_iter(match=f"{BUILTIN_NAMESPACE}:*", count=1000))
        return int(client.delete(*keys)) if keys else 0
    finally:
        client.close()


def run_case(name: str, case: Case, env: dict[str, str], args: argparse.Namespace, log: Path) -> dict[str, Any]:
    with serve(case, env, log, args.workers) as served:
        port = served.port
        if case.login:
            cookie, page = log_in(port)
        else:
            cookie = ""
            status, _, page = request(port, "GET", "/")
            if status != 200 or LOGGED_IN not in page:
                raise RuntimeError(f"{name}: GET / answered {status} without the logged-in page")
        try:
            if args.warmup:
                wrk(port, cookie, args.connections, args.warmup)
            cpu = server_cpu_seconds(served.group)
            result: dict[str, Any] = wrk(port, cookie, args.connections, args.duration)
            result["server_cpu_us"] = (server_cpu_seconds(served.group) - cpu) / max(result["requests"], 1) * 1e6
        finally:
            if case.login:
                log_out(port, cookie)
    result["page_bytes"] = len(page)
    result["page"] = page.decode()
    return result


def report(results: dict[str, dict[str, Any]]) -> None:
    base = results.get("no sessions", {}).get("rps")
    print(f"{'case':34} {'rps':>9} {'p50 ms':>8} {'p99 ms':>8} {'rps / no sessions':>18} {'server CPU us/req':>18}")
    for name, result in results.items():
        ratio = f"{result['rps'] / base:18.2f}" if base else " " * 18
        cpu = f"{result['server_cpu_us']:18.0f}"
        print(f"{name:34} {result['rps']:9.0f} {result['p50_ms']:8.2f} {result['p99_ms']:8.2f} {ratio} {cpu}")
        if result["non_2xx"] or result["socket_errors"]:
            print(f"  !! {result['non_2xx']} non-2xx responses, {result['socket_errors']} socket errors")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=5, help="seconds of load per case (default 5)")
    parser.add_argument("--connections", type=int, default=16, help="wrk connections (default 16)")
    parser.add_argument("--workers", type=int, default=1, help="granian worker processes (default 1)")
    parser.add_argument("--quick", action="store_true", help="1 s per case and no warm-up (CI smoke run)")
    parser.add_argument("--json", type=Path, help="also write the results to this JSON file")
    parser.add_argument("--cases", nargs="+", choices=list(CASES), default=list(CASES), help="the cases to run")
    args = parser.parse_args()
    args.warmup = 0 if args.quick else 1
    if args.quick:
        args.duration = 1
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (apt-get install -y wrk)")

    warn_if_busy()
    env = server_env()
    machine = machine_info()  # before the load, so that its load average is the machine's own
    demo_table_existed = postgres_table_exists(env["POSTGRES_URL"]) if "ours PostgresStore" in args.cases else None
    started = time.monotonic()
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="lfs-http-load-") as tmp:
        log = Path(tmp) / "granian.log"
        try:
            for name in args.cases:
                results[name] = run_case(name, CASES[name], env, args, log)
        finally:
            if "litestar ServerSideSessionConfig" in args.cases:
                delete_builtin_keys(env["REDIS_URL"])
            if demo_table_existed is False:
                with contextlib.suppress(Exception):
                    drop_empty_demo_table(env["POSTGRES_URL"])
    pages = {result.pop("page") for result in results.values()}
    report(results)
    print()
    print(
        f"wrk -t1 -c{args.connections} -d{args.duration}s per case, {args.workers} granian worker(s), "
        f"{os.cpu_count()} cores shared by wrk, server and database"
    )
    if len(pages) > 1:
        print("!! the cases did not serve the same page")
    if args.json:
        data = {
            "benchmark": "http_load",
            "machine": machine,
            "settings": {
                "duration_s": args.duration,
                "connections": args.connections,
                "workers": args.workers,
                "wrk_threads": 1,
            },
            "elapsed_s": round(time.monotonic() - started, 1),
            "results": results,
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(data, indent=2) + "\n")


if __name__ == "__main__":
    main()
