"""How a compare-and-set loop waits after a conflict, and how long it keeps trying.

Every loop that writes a record against the one it read (a session's commit, a user's index, a
revocation) follows this one policy: retry at once after the first conflict, then wait a jittered
time that doubles, and give up (a 503) after :data:`MAX_ATTEMPTS`.
"""

from __future__ import annotations

import asyncio
import random
from typing import Final

__all__ = ("MAX_ATTEMPTS", "back_off")

MAX_ATTEMPTS: Final = 24
"""Compare-and-sets one loop tries before it gives up (a 503); the request's time-out bounds it too."""
_BACKOFF_BASE, _BACKOFF_CAP = 0.001, 0.05
"""Seconds: the jittered wait after the second and later conflicts doubles from the base to the cap."""


async def back_off(attempt: int) -> None:
    """Wait before the retry that follows the conflict of attempt number ``attempt`` (from 0)."""
    if attempt:  # the first conflict is the expected one: retry at once
        await asyncio.sleep(random.uniform(0, min(_BACKOFF_CAP, _BACKOFF_BASE * 2**attempt)))  # noqa: S311
