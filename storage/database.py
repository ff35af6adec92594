"""The async database: URL normalisation, engine, sessions and schema creation.

One choice used everywhere: SQLAlchemy's asyncio engine (aiosqlite for SQLite, psycopg 3 for
PostgreSQL) with short sessions, so nothing blocks the event loop.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.pool import NullPool
from sqlmodel import SQLModel, text
from sqlmodel.ext.asyncio.session import AsyncSession

# Importing the table modules registers their tables on SQLModel.metadata.
import storage.files
import storage.models
import storage.retrieval
import storage.slack  # noqa: F401
from storage.retrieval import create_retrieval_schema

__all__ = ["Database", "database_url_for"]


def database_url_for(database_url: str | None, data_dir: Path) -> str:
    """The async SQLAlchemy URL for a `DATABASE_URL` setting (or the SQLite default)."""
    if not database_url:
        return f"sqlite+aiosqlite:///{(data_dir / 'slack-assistants.db').resolve()}"
    url = make_url(database_url)
    if url.drivername in ("sqlite", "sqlite+pysqlite"):
        url = url.set(drivername="sqlite+aiosqlite")
    elif url.drivername in ("postgres", "postgresql", "postgresql+psycopg2", "postgresql+asyncpg"):
        url = url.set(drivername="postgresql+psycopg")
    return url.render_as_string(hide_password=False)


class Database:
    """Owns the engine; hands out short-lived sessions."""

    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        options: dict[str, Any] = {"echo": echo}
        if self.is_sqlite:
            path = make_url(url).database
            if path and path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            # SQLite serialises writers; a generous busy timeout turns contention into waiting.
            options["connect_args"] = {"timeout": 30}
            options["poolclass"] = NullPool if path in (None, "", ":memory:") else None
            if options["poolclass"] is None:
                del options["poolclass"]
        else:
            options.update(pool_pre_ping=True, pool_size=10, max_overflow=20)
        self.engine: AsyncEngine = create_async_engine(url, **options)
        if self.is_sqlite:
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
        self._sessions = async_sessionmaker(
            self.engine, class_=AsyncSession, expire_on_commit=False
        )

    async def create_all(self) -> None:
        """Creates missing tables (first start); existing rows are never touched."""
        async with self.engine.begin() as conn:
            await conn.run_sync(SQLModel.metadata.create_all)
        await create_retrieval_schema(self)

    async def ping(self) -> None:
        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """A session whose work commits on success and rolls back on any error."""
        async with self._sessions() as session, session.begin():
            yield session

    async def dispose(self) -> None:
        await self.engine.dispose()


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()
