"""The batch loop the SQL stores' ``delete_expired`` runs in the background of the requests."""

from __future__ import annotations

import asyncio

import pytest

from litestar_flash_sessions.stores.base import delete_in_batches


def batches_of(*counts: int) -> tuple[list[int], list[str]]:
    """Counts one fake batch after another returns, and a log the test shares with it."""
    return list(counts), []


async def test_batches_run_until_one_is_not_full() -> None:
    remaining, log = batches_of(25, 25, 25, 7, 25)

    async def delete_batch() -> int:
        log.append("batch")
        return remaining.pop(0)

    async def after_batch(batches: int) -> None:
        log.append(f"after {batches}")

    assert await delete_in_batches(delete_batch, 25, after_batch) == 82
    assert log == ["batch", "after 1", "batch", "after 2", "batch", "after 3", "batch"]
    assert remaining == [25], "no batch after the first one that was not full"


async def test_other_tasks_run_between_batches() -> None:
    remaining, log = batches_of(25, 25, 0)

    async def delete_batch() -> int:
        log.append("batch")
        return remaining.pop(0)

    async def request() -> None:
        log.append("request")

    cleanup = asyncio.create_task(delete_in_batches(delete_batch, 25))
    await asyncio.sleep(0)  # the cleanup runs its first batch, then rests
    await request()
    await asyncio.sleep(0)
    assert await cleanup == 50
    assert log[:2] == ["batch", "request"], "the request did not wait for the whole cleanup"


async def test_a_failing_batch_ends_the_cleanup_with_its_error() -> None:
    remaining, _ = batches_of(25)

    async def delete_batch() -> int:
        if not remaining:
            raise ConnectionError("gone")
        return remaining.pop(0)

    with pytest.raises(ConnectionError, match="gone"):
        await delete_in_batches(delete_batch, 25)
