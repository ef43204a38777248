"""The login demo as a multi-worker server runs it, with each response naming its worker process.

``uvicorn tests.served_demo:app --workers 2`` (the store comes from ``SESSION_STORE``).
"""

from __future__ import annotations

from examples.login import create_app
from tests.worker import naming_the_worker

app = naming_the_worker(create_app())
