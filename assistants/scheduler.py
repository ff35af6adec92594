"""APScheduler on the running event loop, stopped without cutting a job off mid-statement.

APScheduler's own `shutdown` cancels the tasks of jobs that are running. A job cancelled
inside a database statement makes SQLAlchemy tear its connection down while the owner is
disposing of the pool; on aiosqlite that teardown can wait forever for a connection thread that
has already stopped, and the event loop never finishes closing (seen in CI, a sweep cancelled
at shutdown). The jobs are short sweeps, so `stop` lets the running ones end first.

They are also periodic and idempotent: a run still going when the next is due makes that one
skipped (one instance each), a late one still runs (no misfire window). Under load both happen
every second, and APScheduler would log a warning each time; the skip is by design, so it is
not logged.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC

from apscheduler.executors.asyncio import AsyncIOExecutor
from apscheduler.schedulers.asyncio import AsyncIOScheduler


class _Executor(AsyncIOExecutor):
    async def settle(self, grace: float) -> None:
        """Waits up to `grace` seconds for the jobs running now to end, then cancels the
        rest and waits (briefly) for them to unwind."""
        running = [future for future in self._pending_futures if not future.done()]
        if not running:
            return
        _, late = await asyncio.wait(running, timeout=grace)
        for future in late:
            future.cancel()
        if late:
            await asyncio.wait(late, timeout=1.0)


class _NotSkips(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "skipped: maximum number of running instances" not in str(record.msg)


_LOG = logging.getLogger("assistants.scheduler")
_LOG.addFilter(_NotSkips())


class Scheduler(AsyncIOScheduler):
    """An `AsyncIOScheduler` (UTC) whose `stop` waits for running jobs before shutting down."""

    def __init__(self) -> None:
        self._executor = _Executor()
        super().__init__(
            timezone=UTC,
            executors={"default": self._executor},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
            logger=_LOG,
        )

    async def stop(self, grace: float = 10.0) -> None:
        """Starts no more jobs, gives the running ones `grace` seconds, then cancels
        what is still running and shuts down."""
        if not self.running:
            return
        self.pause()
        await self._executor.settle(grace)
        self.shutdown(wait=False)
        await asyncio.sleep(0)  # AsyncIOScheduler shuts down in a callback on the loop
