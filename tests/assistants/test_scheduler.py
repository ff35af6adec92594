"""Stopping the maintenance scheduler lets a running job end instead of cancelling it mid-way
(a sweep cancelled inside an aiosqlite statement hung the event loop's close in CI)."""

from __future__ import annotations

import asyncio
import itertools
import logging

import pytest

from assistants import Scheduler


async def test_stop_waits_for_the_running_job_and_starts_no_other() -> None:
    scheduler = Scheduler()
    began, runs = asyncio.Event(), []

    async def sweep() -> None:
        began.set()
        await asyncio.sleep(0.3)
        runs.append("ended")

    scheduler.add_job(sweep, "interval", seconds=0.05, max_instances=1, coalesce=True)
    scheduler.start()
    await asyncio.wait_for(began.wait(), 5)
    await scheduler.stop()
    assert runs == ["ended"]
    assert not scheduler.running
    await asyncio.sleep(0.2)
    assert runs == ["ended"]


async def test_a_job_outlasting_the_grace_is_cancelled() -> None:
    scheduler = Scheduler()
    began, outcome = asyncio.Event(), []

    async def stuck() -> None:
        began.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            outcome.append("cancelled")
            raise

    scheduler.add_job(stuck, "date")
    scheduler.start()
    await asyncio.wait_for(began.wait(), 5)
    await scheduler.stop(grace=0.1)
    await asyncio.sleep(0)
    assert outcome == ["cancelled"]


async def test_a_sweep_outlasting_its_interval_is_skipped_without_warnings(
    caplog: pytest.LogCaptureFixture,
) -> None:
    scheduler = Scheduler()
    runs: list[float] = []

    async def slow_sweep() -> None:
        runs.append(asyncio.get_running_loop().time())
        await asyncio.sleep(0.25)

    scheduler.add_job(slow_sweep, "interval", seconds=0.05)
    with caplog.at_level(logging.DEBUG):
        scheduler.start()
        await asyncio.sleep(0.6)
        await scheduler.stop()
    assert 2 <= len(runs) <= 3  # one at a time: due runs meanwhile were skipped
    assert all(b - a >= 0.24 for a, b in itertools.pairwise(runs))
    noisy = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert noisy == []
