"""Run the secantusdb MongoDB-wire server for the test suite (started by tests/servers.py, from its venv).

Usage: python mongo_wire_server.py HOST PORT

In-memory storage, standalone (no replica set), TTL indexes swept every second.
SIGTERM or SIGINT stops the server cleanly.
"""

from __future__ import annotations

import logging
import signal
import sys

from secantus.server import SecantusDBServer


def _raise_exit(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def main() -> None:
    """Serve until SIGTERM/SIGINT, then stop the server."""
    if len(sys.argv) != 3:
        sys.exit(f"usage: {sys.argv[0]} HOST PORT")
    host, port = sys.argv[1], int(sys.argv[2])
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    server = SecantusDBServer(
        host=host,
        port=port,
        storage_path=":memory:",
        replica_set_name=None,
        ttl_sweep_seconds=1.0,
    )
    signal.signal(signal.SIGTERM, _raise_exit)
    signal.signal(signal.SIGINT, _raise_exit)
    server.start()
    try:
        server.wait()
    finally:
        server.stop()


if __name__ == "__main__":
    main()
