"""Assistants: create, retrieve, list, modify, delete."""

from __future__ import annotations

from typing import Any

from openai.types.beta import Assistant, AssistantDeleted
from sqlmodel import col, delete, select
from sqlmodel.ext.asyncio.session import AsyncSession

from assistants.clock import Clock
from assistants.errors import NotFound
from assistants.ids import new_id
from assistants.pagination import Page, paginate
from assistants.params import AssistantCreate, AssistantUpdate, ListQuery
from assistants.wire import assistant_wire
from storage import AssistantRow, Database

__all__ = ["AssistantService", "load_assistant"]

# Fields copied from a create/modify body onto the row, under the row's attribute names.
_FIELDS = {
    "model": "model",
    "name": "name",
    "description": "description",
    "instructions": "instructions",
    "tools": "tools",
    "tool_resources": "tool_resources",
    "metadata": "meta",
    "temperature": "temperature",
    "top_p": "top_p",
    "response_format": "response_format",
}


class AssistantService:
    def __init__(self, *, db: Database, clock: Clock) -> None:
        self._db, self._clock = db, clock

    async def create(self, params: AssistantCreate) -> Assistant:
        row = AssistantRow(id=new_id("assistant"), created_at=self._clock.now(), model=params.model)
        _apply(row, params.model_dump(mode="json", exclude_unset=True, by_alias=True))
        async with self._db.session() as session:
            session.add(row)
        return assistant_wire(row)

    async def retrieve(self, assistant_id: str) -> Assistant:
        async with self._db.session() as session:
            return assistant_wire(await load_assistant(session, assistant_id))

    async def list(self, query: ListQuery) -> Page[Assistant]:
        async with self._db.session() as session:
            page = await paginate(session, AssistantRow, query)
        return Page([assistant_wire(row) for row in page.data], page.has_more)

    async def find_by_name(self, name: str) -> Assistant | None:
        """The newest assistant with this name (used to sync `assistants.yml` by name)."""
        async with self._db.session() as session:
            statement = (
                select(AssistantRow)
                .where(col(AssistantRow.name) == name)
                .order_by(col(AssistantRow.seq).desc())
            )
            row = (await session.exec(statement)).first()
        return assistant_wire(row) if row else None

    async def update(self, assistant_id: str, params: AssistantUpdate) -> Assistant:
        async with self._db.session() as session:
            row = await load_assistant(session, assistant_id)
            _apply(row, params.model_dump(mode="json", exclude_unset=True, by_alias=True))
            session.add(row)
        return assistant_wire(row)

    async def delete(self, assistant_id: str) -> AssistantDeleted:
        async with self._db.session() as session:
            await load_assistant(session, assistant_id)
            await session.exec(delete(AssistantRow).where(col(AssistantRow.id) == assistant_id))
        return AssistantDeleted(id=assistant_id, object="assistant.deleted", deleted=True)


async def load_assistant(session: AsyncSession, assistant_id: str) -> AssistantRow:
    row = (
        await session.exec(select(AssistantRow).where(col(AssistantRow.id) == assistant_id))
    ).first()
    if row is None:
        raise NotFound("assistant", assistant_id)
    return row


def _apply(row: AssistantRow, values: dict[str, Any]) -> None:
    for field, attribute in _FIELDS.items():
        if field in values:
            value = values[field]
            if field == "metadata" and value is None:
                value = {}
            if field == "tools" and value is None:
                value = []
            setattr(row, attribute, value)
