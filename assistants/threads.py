"""Threads: create (with initial messages), retrieve, modify, delete; the thread lock."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from openai.types.beta import Thread, ThreadDeleted
from sqlmodel import col, delete
from sqlmodel.ext.asyncio.session import AsyncSession

from assistants.clock import Clock
from assistants.ids import new_id
from assistants.locking import ThreadLocks, load_thread
from assistants.messages import new_message_row
from assistants.params import ThreadCreate, ThreadUpdate
from assistants.wire import thread_wire
from storage import Database, MessageRow, RunRow, RunStepRow, ThreadRow

__all__ = ["ThreadService"]


class ThreadService:
    def __init__(
        self,
        *,
        db: Database,
        clock: Clock,
        locks: ThreadLocks,
        stop_runs: Callable[[str], Awaitable[None]],
    ) -> None:
        self._db, self._clock, self._locks, self._stop_runs = db, clock, locks, stop_runs

    async def create(self, params: ThreadCreate) -> Thread:
        async with self._db.session() as session:
            row = await self.create_in(session, params)
        return thread_wire(row)

    async def create_in(self, session: AsyncSession, params: ThreadCreate) -> ThreadRow:
        """Creates the thread and its initial messages inside the caller's transaction."""
        now = self._clock.now()
        row = ThreadRow(
            id=new_id("thread"),
            created_at=now,
            meta=params.metadata or {},
            tool_resources=_resources(params),
        )
        session.add(row)
        for message in params.messages or []:
            session.add(new_message_row(row.id, message, now))
        await session.flush()
        return row

    async def retrieve(self, thread_id: str) -> Thread:
        async with self._db.session() as session:
            return thread_wire(await load_thread(session, thread_id))

    async def update(self, thread_id: str, params: ThreadUpdate) -> Thread:
        async with self._db.session() as session:
            row = await load_thread(session, thread_id)
            if "metadata" in params.model_fields_set:
                row.meta = params.metadata or {}
            if "tool_resources" in params.model_fields_set:
                row.tool_resources = _resources(params)
            session.add(row)
        return thread_wire(row)

    async def delete(self, thread_id: str) -> ThreadDeleted:
        async with self._locks.hold(thread_id):
            async with self._db.session() as session:
                await load_thread(session, thread_id)
            await self._stop_runs(thread_id)
            async with self._db.session() as session:
                for table in (RunStepRow, MessageRow, RunRow):
                    await session.exec(delete(table).where(col(table.thread_id) == thread_id))
                await session.exec(delete(ThreadRow).where(col(ThreadRow.id) == thread_id))
        return ThreadDeleted(id=thread_id, object="thread.deleted", deleted=True)


def _resources(params: ThreadCreate | ThreadUpdate) -> dict[str, object] | None:
    if params.tool_resources is None:
        return None
    return params.tool_resources.model_dump(mode="json", exclude_none=True)
