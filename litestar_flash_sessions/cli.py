"""``litestar sessions``: list and revoke a user's sessions, delete expired ones, from a shell.

The plugin adds the group to Litestar's CLI (``SessionPlugin.on_cli_init``), so it runs against
the app's own store and configuration::

    litestar --app app:app sessions list ann@example.com
    litestar --app app:app sessions revoke ann@example.com --keep HANDLE
    litestar --app app:app sessions clear-expired
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, TypeVar

import click

from litestar_flash_sessions.stores.base import StoreUnavailableError
from litestar_flash_sessions.users import UnsupportedStoreError, UserSessionManager

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from litestar import Litestar

    from litestar_flash_sessions.config import SessionConfig

__all__ = ("add_sessions_commands",)

T = TypeVar("T")


def add_sessions_commands(cli: click.Group) -> None:
    """Add the ``sessions`` group to Litestar's root command group."""

    @cli.group(name="sessions")
    def sessions() -> None:
        """List and revoke users' sessions; delete expired ones."""

    @sessions.command(name="list")
    @click.argument("user")
    def list_sessions(app: Litestar, user: str) -> None:
        """List USER's live sessions, oldest first: handle, created, last seen, device."""
        found = _run(app, lambda config: UserSessionManager(config).list_sessions(user))
        for info in found:
            # What device_info kept comes from the client (a User-Agent): shown escaped and each
            # value quoted, so that it can neither send the terminal control sequences, reorder
            # the line's text (bidirectional controls), nor forge a column or a field.
            device = " ".join(
                f'{_printable(name)}="{_printable(value)}"' for name, value in sorted(info.device.items())
            )
            click.echo(f"{info.handle}\t{info.created_at.isoformat()}\t{info.last_seen.isoformat()}\t{device}".rstrip())
        if not found:
            click.echo(f"no live sessions for {user}", err=True)

    @sessions.command(name="revoke")
    @click.argument("user")
    @click.option("--keep", metavar="HANDLE", default=None, help="Keep the session of this handle.")
    def revoke(app: Litestar, user: str, keep: str | None) -> None:
        """Revoke every session of USER (but the one named by --keep)."""
        count = _run(app, lambda config: UserSessionManager(config).revoke_others(user, keep))
        click.echo(f"revoked {count} session{'s' * (count != 1)} of {user}")

    @sessions.command(name="clear-expired")
    def clear_expired(app: Litestar) -> None:
        """Delete expired sessions now (stores that expire them by themselves report 0)."""
        count = _run(app, lambda config: config.store.delete_expired())
        click.echo(f"deleted {count} expired session{'s' * (count != 1)}")


def _printable(text: str) -> str:
    """Return ``text`` with every character that is not printable escaped (controls, tabs and
    newlines, bidirectional and other format characters, separators but the space), and
    backslashes and double quotes.
    """
    return "".join(char if char.isprintable() and char not in '\\"' else _escaped(char) for char in text)


def _escaped(char: str) -> str:
    return '\\"' if char == '"' else char.encode("unicode_escape").decode("ascii")


def _run(app: Litestar, action: Callable[[SessionConfig], Awaitable[T]]) -> T:
    """Run ``action`` on the app's session config inside its store's lifespan, in a loop of its own."""
    from litestar_flash_sessions.plugin import SessionPlugin

    plugin = app.plugins.get(SessionPlugin)
    config = plugin.config

    async def run() -> T:
        async with config.store.lifespan():
            return await action(config)

    try:
        return asyncio.run(run())
    except (StoreUnavailableError, UnsupportedStoreError, ValueError) as exc:
        # (ValueError: a USER that cannot name a user, such as bytes in argv that are not UTF-8.)
        raise click.ClickException(str(exc)) from exc
