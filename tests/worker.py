"""What the test servers of several worker processes share: responses that name their worker."""

from __future__ import annotations

import os

from litestar.types import ASGIApp, Message, Receive, Scope, Send

_WORKER = str(os.getpid()).encode()


def naming_the_worker(asgi: ASGIApp) -> ASGIApp:
    """Wrap ``asgi`` so that every response carries ``x-worker-pid``: this process's id."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_worker(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message["headers"], (b"x-worker-pid", _WORKER)]
            await send(message)

        await asgi(scope, receive, send_with_worker)

    return app
