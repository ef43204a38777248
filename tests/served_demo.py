"""The login demo as a multi-worker server runs it, with each response naming its worker process.

``uvicorn tests.served_demo:app --workers 2`` (the store comes from ``SESSION_STORE``).
"""

from __future__ import annotations

import os

from litestar.types import Message, Receive, Scope, Send

from examples.login import create_app

_demo = create_app()
_WORKER = str(os.getpid()).encode()


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    async def send_with_worker(message: Message) -> None:
        if message["type"] == "http.response.start":
            message["headers"] = [*message["headers"], (b"x-worker-pid", _WORKER)]
        await send(message)

    await _demo(scope, receive, send_with_worker)
