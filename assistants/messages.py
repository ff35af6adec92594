"""Messages: add to a thread (respecting the run lock), retrieve, list, modify, delete."""

from __future__ import annotations

from typing import Any

from openai.types.beta.threads import Message, MessageDeleted
from sqlmodel import col, delete, select
from sqlmodel.ext.asyncio.session import AsyncSession

from assistants.clock import Clock
from assistants.errors import Conflict, NotFound
from assistants.ids import new_id
from assistants.locking import ThreadLocks, active_run, load_thread
from assistants.pagination import Page, paginate
from assistants.params import ListQuery, MessageCreate, MessageUpdate
from assistants.wire import message_wire
from storage import Database, MessageRow

__all__ = ["MessageService", "message_content", "new_message_row"]


class MessageService:
    def __init__(self, *, db: Database, clock: Clock, locks: ThreadLocks) -> None:
        self._db, self._clock, self._locks = db, clock, locks

    async def create(self, thread_id: str, params: MessageCreate) -> Message:
        async with self._locks.hold(thread_id), self._db.session() as session:
            await load_thread(session, thread_id, for_update=True)
            running = await active_run(session, thread_id)
            if running is not None:
                raise Conflict(
                    f"Can't add messages to {thread_id} while a run {running.id} is active."
                )
            row = new_message_row(thread_id, params, self._clock.now())
            session.add(row)
        return message_wire(row)

    async def retrieve(self, thread_id: str, message_id: str) -> Message:
        async with self._db.session() as session:
            return message_wire(await _load(session, thread_id, message_id))

    async def list(
        self, thread_id: str, query: ListQuery, *, run_id: str | None = None
    ) -> Page[Message]:
        async with self._db.session() as session:
            await load_thread(session, thread_id)
            filters = [col(MessageRow.thread_id) == thread_id]
            if run_id is not None:
                filters.append(col(MessageRow.run_id) == run_id)
            page = await paginate(session, MessageRow, query, filters)
        return Page([message_wire(row) for row in page.data], page.has_more)

    async def update(self, thread_id: str, message_id: str, params: MessageUpdate) -> Message:
        async with self._db.session() as session:
            row = await _load(session, thread_id, message_id)
            if "metadata" in params.model_fields_set:
                row.meta = params.metadata or {}
            session.add(row)
        return message_wire(row)

    async def delete(self, thread_id: str, message_id: str) -> MessageDeleted:
        async with self._db.session() as session:
            await _load(session, thread_id, message_id)
            await session.exec(delete(MessageRow).where(col(MessageRow.id) == message_id))
        return MessageDeleted(id=message_id, object="thread.message.deleted", deleted=True)


def new_message_row(
    thread_id: str,
    params: MessageCreate,
    now: int,
    *,
    run_id: str | None = None,
    assistant_id: str | None = None,
) -> MessageRow:
    attachments = None
    if params.attachments is not None:
        attachments = [a.model_dump(mode="json", exclude_none=True) for a in params.attachments]
    return MessageRow(
        id=new_id("message"),
        thread_id=thread_id,
        created_at=now,
        role=params.role,
        status="completed",
        content=message_content(params.content),
        attachments=attachments,
        meta=params.metadata or {},
        run_id=run_id,
        assistant_id=assistant_id,
        completed_at=now,
    )


def message_content(content: str | list[Any]) -> list[dict[str, Any]]:
    """Request content (a string or parts) -> the stored wire content parts."""
    if isinstance(content, str):
        return [{"type": "text", "text": {"value": content, "annotations": []}}]
    parts: list[dict[str, Any]] = []
    for part in content:
        if part.type == "text":
            parts.append({"type": "text", "text": {"value": part.text, "annotations": []}})
        else:
            parts.append(part.model_dump(mode="json", exclude_none=True))
    return parts


async def _load(session: AsyncSession, thread_id: str, message_id: str) -> MessageRow:
    statement = select(MessageRow).where(
        col(MessageRow.id) == message_id, col(MessageRow.thread_id) == thread_id
    )
    row = (await session.exec(statement)).first()
    if row is None:
        raise NotFound("message", message_id)
    return row
