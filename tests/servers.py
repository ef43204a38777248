"""The real servers the suite needs, started on first use and stopped when the session ends.

``server_url`` (tests/harness.py) asks for them: the first test that needs a server starts every
server whose URL is not already in the environment (``scripts/servers.sh start`` installs what is
missing and starts them on loopback ports), and the session-scoped fixture ``test_servers`` in
tests/conftest.py stops them at the end, unless ``KEEP_SERVERS=1``. A URL already in the
environment (``REDIS_URL``, ``REDIS_CLUSTER_URL``, ``WEBDIS_URL``, ``POSTGRES_URL``, ``MONGO_URL``)
points the suite at an existing server instead: a real ``mongod``, a managed Redis.

``python -m tests.servers run COMMAND...`` runs a command with the servers (the benchmarks).
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).parent.parent / "scripts" / "servers.sh"
VARIABLES = ("REDIS_URL", "REDIS_CLUSTER_URL", "WEBDIS_URL", "POSTGRES_URL", "MONGO_URL")

_started = False
_failure: str | None = None


def parse_env(text: str) -> dict[str, str]:
    """Parse the ``export NAME=value`` lines ``servers.sh`` prints (shell-quoted: a DSN with ``&``
    or ``?`` comes back whole)."""
    env = {}
    for line in text.splitlines():
        words = shlex.split(line)
        if len(words) == 2 and words[0] == "export" and "=" in words[1]:
            name, value = words[1].split("=", 1)
            env[name] = value
    return env


def ensure() -> str | None:
    """Start the servers whose URLs are missing, once; return why they could not start, if so."""
    global _started, _failure  # noqa: PLW0603 (one set of servers per test session)
    if _started or _failure is not None or all(os.environ.get(name) for name in VARIABLES):
        return _failure
    result = subprocess.run([str(SCRIPT), "start"], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        _failure = f"scripts/servers.sh start failed: {result.stderr.strip()[-2000:]}"
        return _failure
    for name, value in parse_env(result.stdout).items():
        os.environ.setdefault(name, value)
    _started = True
    return None


def stop() -> None:
    """Stop the servers this session started (unless ``KEEP_SERVERS=1``)."""
    global _started  # noqa: PLW0603
    if _started and os.environ.get("KEEP_SERVERS") != "1":
        subprocess.run([str(SCRIPT), "stop"], capture_output=True, check=False)
        _started = False


def main() -> int:
    """``run COMMAND...``: run a command with the servers' URLs in its environment."""
    if sys.argv[1:2] != ["run"] or len(sys.argv) < 3:
        print("usage: python -m tests.servers run COMMAND...", file=sys.stderr)
        return 2
    failure = ensure()
    if failure:
        print(failure, file=sys.stderr)
        return 1
    try:
        return subprocess.run(sys.argv[2:], check=False).returncode
    finally:
        stop()


if __name__ == "__main__":
    sys.exit(main())
