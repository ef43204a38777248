"""A store in the process's memory: for tests, development and single-process apps."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from litestar_flash_sessions.stores.base import SessionStore

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ("MemoryStore",)

_SWEEP_EVERY = 1024
"""Writes between two sweeps of expired records, so that abandoned sessions do not pile up."""


class MemoryStore(SessionStore):
    """Keep session records in a dict of this process.

    Records are immutable bytes, so no two requests ever share a live object. Sessions are lost
    when the process ends and are not shared between worker processes.

    Args:
        clock: Seconds on a monotonic scale; injectable so that tests can move time.
    """

    __slots__ = ("_clock", "_records", "_writes")

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._records: dict[str, tuple[bytes, float | None]] = {}
        self._writes = 0

    def __len__(self) -> int:
        """Return how many records are held, expired ones included until they are evicted."""
        return len(self._records)

    async def get(self, session_id: str, expires_in: int | None) -> bytes | None:
        """Return the record, evicting it if expired; slide its expiry when asked."""
        now = self._clock()
        record = self._live_record(session_id, now)
        if record is not None and expires_in is not None:
            self._records[session_id] = (record, now + expires_in)
        return record

    async def set(self, session_id: str, record: bytes, expires_in: int | None, previous: bytes | None) -> bool:
        """Write the record if the stored one is still ``previous``."""
        now = self._clock()
        if self._live_record(session_id, now) != previous:
            return False
        self._records[session_id] = (record, None if expires_in is None else now + expires_in)
        self._writes += 1
        if self._writes % _SWEEP_EVERY == 0:
            self._evict_expired(now)
        return True

    def _live_record(self, session_id: str, now: float) -> bytes | None:
        entry = self._records.get(session_id)
        if entry is None:
            return None
        record, expires_at = entry
        if expires_at is not None and expires_at <= now:
            del self._records[session_id]
            return None
        return record

    async def delete(self, session_id: str) -> None:
        """Delete the record, if any."""
        self._records.pop(session_id, None)

    async def delete_expired(self) -> int:
        """Evict every expired record and return how many were evicted."""
        return self._evict_expired(self._clock())

    def _evict_expired(self, now: float) -> int:
        expired = [key for key, (_, at) in self._records.items() if at is not None and at <= now]
        for key in expired:
            del self._records[key]
        return len(expired)
