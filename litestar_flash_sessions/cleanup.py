"""Periodic deletion of expired sessions, for stores whose server does not expire them itself."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from litestar_flash_sessions.backend import SessionBackend

__all__ = ("PeriodicCleanup",)

logger = logging.getLogger("litestar_flash_sessions")


class PeriodicCleanup:
    """Run ``store.delete_expired()`` every ``interval`` seconds between app start-up and shutdown.

    A failed run is logged and retried at the next interval; it never stops the app.
    """

    __slots__ = ("_interval", "_store", "_task")

    def __init__(self, store: SessionBackend, interval: float) -> None:
        self._store = store
        self._interval = interval
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start the loop (called on app start-up)."""
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        """Stop the loop (called on app shutdown)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                deleted = await self._store.delete_expired()
            except Exception:
                logger.exception("deleting expired sessions from %s failed", type(self._store).__name__)
            else:
                logger.debug("deleted %d expired sessions from %s", deleted, type(self._store).__name__)
