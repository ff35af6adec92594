"""Alembic's entry point: migrates the connection `alembic_config` was given (online only)."""

from __future__ import annotations

from typing import Any, Literal

from alembic import context
from alembic.autogenerate.api import AutogenContext
from sqlalchemy import Connection
from sqlmodel import SQLModel
from sqlmodel.sql.sqltypes import AutoString

from storage.migrations import include_name, include_object, sqlite_begin


def _render_item(type_: str, obj: Any, _context: AutogenContext) -> str | Literal[False]:
    """Autogenerate writes SQLModel's `AutoString` as the plain `sa.String` it is."""
    if type_ == "type" and isinstance(obj, AutoString):
        return f"sa.String(length={obj.length})" if obj.length else "sa.String()"
    return False


connection = context.config.attributes.get("connection")
if not isinstance(connection, Connection):
    raise RuntimeError(
        "storage.migrations runs from code with a connection: use `slack-assistants db upgrade`"
    )
context.configure(
    connection=connection,
    target_metadata=SQLModel.metadata,
    include_name=include_name,
    include_object=include_object,
    render_item=_render_item,
    # SQLite alters most things by copying the table: batch operations do that for us.
    render_as_batch=connection.dialect.name == "sqlite",
    # One transaction for the whole upgrade on SQLite too (`sqlite_begin` opens it for real).
    transactional_ddl=True,
)
with context.begin_transaction():
    sqlite_begin(connection)
    context.run_migrations()
