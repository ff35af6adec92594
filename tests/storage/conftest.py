"""A database as the release before schema migrations left it, and helpers to read it whole.

The dumps in `fixtures/` were made once by that release's own code (commit b73276d: its Engine,
REST API and bot tables); see the comment at the top of each.
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy import Connection, inspect, text
from sqlalchemy.engine import make_url
from sqlmodel import SQLModel

from storage import Database

FIXTURES = Path(__file__).parent / "fixtures"

#: Every table the previous release had.
PREVIOUS_TABLES = (
    "assistant",
    "chunk",
    "file",
    "message",
    "run",
    "run_step",
    "slack_assistant_choice",
    "slack_processed_event",
    "slack_queued_message",
    "slack_reminder",
    "slack_thread",
    "thread",
    "vector_store",
    "vector_store_batch",
    "vector_store_file",
)

Rows = dict[str, list[dict[str, Any]]]


async def load_previous_release(db: Database) -> None:
    """Loads the dump for the database's dialect into it (which must be empty)."""
    url = make_url(db.url)
    if db.is_sqlite:
        script = (FIXTURES / "prev_release_sqlite.sql").read_text(encoding="utf-8")
        assert url.database
        await asyncio.to_thread(_sqlite_script, url.database, script)
        return
    script = (FIXTURES / "prev_release_postgres.sql").read_text(encoding="utf-8")
    conninfo = url.set(drivername="postgresql").render_as_string(hide_password=False)
    # A connection of its own: the dump SETs session options.
    async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as conn:
        await conn.execute(script.encode())


def _sqlite_script(path: str, script: str) -> None:
    conn = sqlite3.connect(path)
    try:
        conn.executescript(script)
    finally:
        conn.close()


async def read_rows(db: Database, tables: tuple[str, ...] = PREVIOUS_TABLES) -> Rows:
    """Every row of `tables` in primary key order, with the columns the models know."""
    async with db.engine.connect() as conn:
        return await conn.run_sync(_read_rows, tables)


def _read_rows(conn: Connection, tables: tuple[str, ...]) -> Rows:
    inspector = inspect(conn)
    rows: Rows = {}
    for table in tables:
        known = SQLModel.metadata.tables[table].c
        columns = [c["name"] for c in inspector.get_columns(table) if c["name"] in known]
        keys = inspector.get_pk_constraint(table)["constrained_columns"]
        query = 'SELECT {} FROM "{}" ORDER BY {}'.format(
            ", ".join(f'"{c}"' for c in columns), table, ", ".join(f'"{k}"' for k in keys)
        )
        rows[table] = [dict(row._mapping) for row in conn.execute(text(query))]
    return rows


def only_columns_of(rows: Rows, like: Rows) -> Rows:
    """`rows` with just the columns `like` has (what a later revision added left out)."""
    return {
        table: [{k: row[k] for k in like[table][0]} for row in found] if like[table] else found
        for table, found in rows.items()
    }


@pytest.fixture
async def previous_release(database: Database) -> Database:
    await load_previous_release(database)
    return database
