"""The three clocks of a session: idle timeout, absolute timeout, and the session's own lifetime.

* idle (``SessionConfig.expire_after_seconds``, or the session's own from ``set_expiry``): a
  session not used for this long is dead; every use slides it;
* absolute (``SessionConfig.absolute_timeout_seconds``): a session older than this since it was
  created is dead however active (rotation keeps the creation time);
* the cookie's ``Max-Age`` (``set_expiry``, else ``SessionConfig.cookie_max_age``) slides with
  the store's expiry, at most every ``TOUCH_SECONDS``.

Stores expire records natively with :func:`store_ttl`; :func:`is_dead` checks the content
itself at every load as well, so that a record or a sealed cookie written under an older, laxer
configuration does not outlive the current one.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from litestar_flash_sessions.record import TOUCH_SECONDS, Live

if TYPE_CHECKING:
    from litestar_flash_sessions.config import SessionConfig

__all__ = (
    "cookie_max_age",
    "idle_timeout",
    "is_dead",
    "is_stale",
    "needs_touch",
    "on_load",
    "store_ttl",
    "touch_interval",
)


def idle_timeout(content: Live, config: SessionConfig) -> int | None:
    """Return the session's idle timeout in seconds: its own, else the config's (``None``: never)."""
    return content.lifetime or config.ttl


def touch_interval(content: Live, config: SessionConfig) -> float:
    """Return how stale ``seen_at`` may get: ``TOUCH_SECONDS``, or a tenth of a shorter idle timeout."""
    idle = idle_timeout(content, config)
    return TOUCH_SECONDS if idle is None else min(TOUCH_SECONDS, idle / 10)


def is_stale(content: Live, config: SessionConfig, now: float) -> bool:
    """Return whether ``seen_at`` is a touch interval old: the next write refreshes it (and slides
    a persistent cookie).
    """
    return now - content.seen_at >= touch_interval(content, config)


def is_dead(content: Live, config: SessionConfig, now: float) -> bool:
    """Return whether the session has outlived its absolute or its idle timeout.

    ``seen_at`` lags real use by up to a touch interval, so the idle check allows that much.
    """
    absolute = config.absolute_timeout_seconds
    if absolute and now >= content.created_at + absolute:
        return True
    idle = idle_timeout(content, config)
    return idle is not None and now > content.seen_at + idle + touch_interval(content, config)


def on_load(content: Live, config: SessionConfig, now: float) -> tuple[bool, bool] | None:
    """Return what a load needs to know of loaded content at once: ``None`` when it
    :func:`is_dead`, else whether it :func:`is_stale` and whether it :func:`needs_touch`.

    The same rules as those functions, with the timeouts looked up once (a load runs per request).
    """
    absolute = config.absolute_timeout_seconds
    if absolute and now >= content.created_at + absolute:
        return None
    ttl = config.expire_after_seconds or None
    own = content.lifetime
    idle = own or ttl
    if idle is None:
        interval: float = TOUCH_SECONDS
    else:
        interval = min(TOUCH_SECONDS, idle / 10)
        if now > content.seen_at + idle + interval:
            return None
    stale = now - content.seen_at >= interval
    # An emptied session is written again by every request that reads it: the read slid its
    # record's expiry to the idle timeout, and it must live at most an hour after its last use.
    return stale, stale or bool(own and ttl and own > ttl) or content.is_empty


def store_ttl(content: Live, config: SessionConfig, now: float) -> int | None:
    """Return the expiry to give the record: its idle timeout, cut at the absolute deadline."""
    idle = idle_timeout(content, config)
    absolute = config.absolute_timeout_seconds
    if not absolute:
        return idle
    left = max(1, math.ceil(content.created_at + absolute - now))
    return left if idle is None else min(idle, left)


def needs_touch(content: Live, config: SessionConfig, now: float) -> bool:
    """Return whether a request that only reads must write the record anyway.

    When ``seen_at`` is ``TOUCH_SECONDS`` old (so device lists and idle checks stay current and
    a persistent cookie's ``Max-Age`` slides about once a minute), and when the session's own
    lifetime is longer than the config's idle timeout, since the read slid the record's expiry
    by the config's; and when the session is empty, which must live at most an hour after its
    last use (the read slid it to the idle timeout).
    """
    if is_stale(content, config, now):
        return True
    return bool(content.lifetime and config.ttl and content.lifetime > config.ttl) or content.is_empty


def cookie_max_age(content: Live, config: SessionConfig) -> int | None:
    """Return the cookie's ``Max-Age``: the session's own lifetime, else the config's ``cookie_max_age``."""
    return content.lifetime or config.cookie_max_age
