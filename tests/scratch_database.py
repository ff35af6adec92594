"""A PostgreSQL database of its own, created on a server and dropped afterwards.

For tests and benchmarks that must not share the schema other tests reset (retrieval creates
extensions and per-size indexes).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from storage import Database


@asynccontextmanager
async def scratch_database(server_url: str, prefix: str) -> AsyncIterator[Database]:
    """A new empty database named `<prefix>_<random>` on `server_url`'s server."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = create_async_engine(server_url, isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as conn:
            await conn.execute(text(f'CREATE DATABASE "{name}"'))
        db = Database(make_url(server_url).set(database=name).render_as_string(hide_password=False))
        try:
            yield db
        finally:
            await db.dispose()
            async with admin.connect() as conn:
                await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        await admin.dispose()
