"""The pytest plugin of litestar-flash-sessions: the ``session_seeder`` fixture.

Installing the package registers it (the ``pytest11`` entry point ``litestar_flash_sessions``);
``-p no:litestar_flash_sessions`` switches it off. It adds one fixture and no hook, option or
marker, so it changes nothing for a suite that does not ask for the fixture::

    def test_dashboard_shows_the_notice_once(session_seeder):
        with TestClient(app) as client:
            session_seeder.set(client, {"user": "ann"}, flashes={"notice": "Welcome back"})
            assert "Welcome back" in client.get("/dashboard").text
            assert "Welcome back" not in client.get("/dashboard").text

The fixture is a :class:`~litestar_flash_sessions.testing.SessionSeeder`: ``set``, ``get``,
``aset``, ``aget``, ``seed``, ``read`` and ``client_config`` are the helpers of
:mod:`litestar_flash_sessions.testing`, which tests may as well import directly.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from litestar_flash_sessions.testing import SessionSeeder

__all__ = ("session_seeder",)


@pytest.fixture
def session_seeder() -> SessionSeeder:
    """Seed a test client's session and read it back: :mod:`litestar_flash_sessions.testing`'s helpers.

    Returns:
        A :class:`~litestar_flash_sessions.testing.SessionSeeder`.
    """
    # Imported here, not when pytest loads the plugin: suites that never ask for the fixture
    # do not import Litestar's test client through it.
    from litestar_flash_sessions.testing import SessionSeeder

    return SessionSeeder()
