"""Cursor pagination shared by every list operation: `limit`, `order`, `after`, `before`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from pydantic import BaseModel
from sqlalchemy import ColumnElement
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from assistants.errors import InvalidRequest
from assistants.params import ListQuery, storable

__all__ = ["Page", "paginate"]

Row = TypeVar("Row", bound=Any)
Item = TypeVar("Item")


@dataclass(slots=True)
class Page(Generic[Item]):
    data: list[Item]
    has_more: bool

    @property
    def first_id(self) -> str | None:
        return getattr(self.data[0], "id", None) if self.data else None

    @property
    def last_id(self) -> str | None:
        return getattr(self.data[-1], "id", None) if self.data else None

    def as_wire(self) -> dict[str, Any]:
        return {
            "object": "list",
            "data": [_dump(item) for item in self.data],
            "first_id": self.first_id,
            "last_id": self.last_id,
            "has_more": self.has_more,
        }


def _dump(item: object) -> object:
    # exclude_unset: the SDK types' unset optional fields are omitted, as `json_response` does.
    return item.model_dump(mode="json", exclude_unset=True) if isinstance(item, BaseModel) else item


async def paginate(
    session: AsyncSession,
    table: type[Row],
    query: ListQuery,
    filters: Sequence[ColumnElement[bool]] = (),
    *,
    id_column: Any = None,
) -> Page[Row]:
    """One page of `table` rows matching `filters`, ordered by creation (`seq`).

    Cursors name rows by `id_column` (default: the table's `id`).
    """
    seq = col(table.seq)
    ids = col(id_column if id_column is not None else table.id)
    statement = select(table).where(*filters)
    descending = query.order == "desc"
    reverse = False
    if query.after:
        cursor = await _cursor_seq(session, table, ids, query.after, "after", filters)
        statement = statement.where(seq < cursor if descending else seq > cursor)
    if query.before:
        cursor = await _cursor_seq(session, table, ids, query.before, "before", filters)
        statement = statement.where(seq > cursor if descending else seq < cursor)
        # The page nearest the cursor: walk away from it, then restore the requested order.
        reverse = not query.after
    walk_descending = descending != reverse
    statement = statement.order_by(seq.desc() if walk_descending else seq.asc())
    rows = list((await session.exec(statement.limit(query.limit + 1))).all())
    has_more = len(rows) > query.limit
    rows = rows[: query.limit]
    if reverse:
        rows.reverse()
    return Page(data=rows, has_more=has_more)


async def _cursor_seq(
    session: AsyncSession,
    table: type[Any],
    ids: Any,
    object_id: str,
    param: str,
    filters: Sequence[ColumnElement[bool]],
) -> int:
    found = None
    if storable(object_id):  # else PostgreSQL refuses the query; no row has such an id anyway
        found = (
            await session.exec(select(table.seq).where(ids == object_id, *filters))
        ).first()
    if found is None:
        raise InvalidRequest(
            f"Invalid '{param}': no object with id '{object_id}' in this list.", param=param
        )
    return int(found)
