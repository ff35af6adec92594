"""The thread lock: one active run per thread, and no new messages while it runs."""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from assistants.errors import NotFound
from storage import RunRow, ThreadRow

__all__ = ["ACTIVE_RUN_STATUSES", "ThreadLocks", "active_run", "load_thread"]

ACTIVE_RUN_STATUSES = ("queued", "in_progress", "requires_action", "cancelling")


class ThreadLocks:
    """Serialises lock-sensitive writes to one thread inside this process.

    Checking "is a run active?" and then inserting must not interleave with another request
    doing the same, or two runs could start on one thread. Across processes the row lock
    taken by `load_thread(..., for_update=True)` does the same job on PostgreSQL.
    """

    def __init__(self) -> None:
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()

    @asynccontextmanager
    async def hold(self, thread_id: str) -> AsyncIterator[None]:
        lock = self._locks.get(thread_id)
        if lock is None:
            lock = asyncio.Lock()
            self._locks[thread_id] = lock
        async with lock:
            yield


async def load_thread(
    session: AsyncSession, thread_id: str, *, for_update: bool = False
) -> ThreadRow:
    statement = select(ThreadRow).where(col(ThreadRow.id) == thread_id)
    if for_update:
        statement = statement.with_for_update()
    row = (await session.exec(statement)).first()
    if row is None:
        raise NotFound("thread", thread_id)
    return row


async def active_run(session: AsyncSession, thread_id: str) -> RunRow | None:
    statement = select(RunRow).where(
        col(RunRow.thread_id) == thread_id, col(RunRow.status).in_(ACTIVE_RUN_STATUSES)
    )
    return (await session.exec(statement)).first()
