"""The async database: URL normalisation, engine, sessions and schema upgrades.

One choice used everywhere: SQLAlchemy's asyncio engine (aiosqlite for SQLite, psycopg 3 for
PostgreSQL) with short sessions, so nothing blocks the event loop.
"""

from __future__ import annotations

import asyncio
import fcntl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import IO, Any

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.pool import NullPool
from sqlmodel import text
from sqlmodel.ext.asyncio.session import AsyncSession

from storage import migrations
from storage.retrieval import create_retrieval_schema
from storage.sqlite_writers import WriteTurns

__all__ = ["DATABASE_UNAVAILABLE", "Database", "database_url_for"]

# pg_advisory_lock key held while one process migrates ("slmg"); other processes wait on it.
_PG_MIGRATION_LOCK = 0x736C6D67
_SQLITE_BUSY_SECONDS = 30

#: What "the database cannot serve us right now" raises: the server or file failed
#: (`DBAPIError`), or no pooled connection came free in time (overload). Callers that retry
#: or leave work for later catch both.
DATABASE_UNAVAILABLE: tuple[type[Exception], ...] = (DBAPIError, PoolTimeout)


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
            # SQLite serialises writers; a generous busy timeout turns contention between
            # processes into waiting (this process's writers queue on `WriteTurns`).
            options["connect_args"] = {"timeout": _SQLITE_BUSY_SECONDS}
            # SQLite connections are cheap; under a burst, sessions wait for the write turn or
            # a free connection, and SQLAlchemy's default 5 + 10 ran out (pool timeouts).
            options.update(pool_size=20, max_overflow=30)
            options["poolclass"] = NullPool if path in (None, "", ":memory:") else None
            if options["poolclass"] is None:
                del options["poolclass"]
        else:
            options.update(pool_pre_ping=True, pool_size=10, max_overflow=20)
        self.engine: AsyncEngine = create_async_engine(url, **options)
        if self.is_sqlite:
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
            WriteTurns(timeout=_SQLITE_BUSY_SECONDS).install(self.engine.sync_engine)
        self._sessions = async_sessionmaker(
            self.engine, class_=AsyncSession, expire_on_commit=False
        )

    async def upgrade(self) -> None:
        """Brings the schema to the newest revision, keeping every row; run at every start.

        At head already (the usual start) this costs one query before the retrieval schema's
        idempotent check. Otherwise one process at a time migrates, under a lock that spans
        processes and replicas; the others wait, then find the work done.
        """
        if await self._at_head():
            await create_retrieval_schema(self)
            return
        async with self._migration_lock():
            async with self.engine.connect() as conn:
                await conn.run_sync(migrations.upgrade)
            await create_retrieval_schema(self)

    async def revision(self) -> str | None:
        """The schema's revision; None before the first upgrade (empty, or pre-migrations)."""
        async with self.engine.connect() as conn:
            return await conn.run_sync(migrations.current)

    async def _at_head(self) -> bool:
        try:
            async with self.engine.connect() as conn:
                found = await conn.execute(text("SELECT version_num FROM alembic_version"))
                return found.scalar_one_or_none() == migrations.head()
        except DBAPIError:  # no version table yet; any other trouble shows up in the upgrade
            return False

    @asynccontextmanager
    async def _migration_lock(self) -> AsyncIterator[None]:
        """PostgreSQL: a session advisory lock on a connection of its own; SQLite: an exclusive
        `flock` on `<database file>.migrate.lock` beside the database (none in memory)."""
        if not self.is_sqlite:
            async with self.engine.connect() as conn:
                await conn.execution_options(isolation_level="AUTOCOMMIT")
                await conn.execute(text(f"SELECT pg_advisory_lock({_PG_MIGRATION_LOCK})"))
                try:
                    yield
                finally:
                    await conn.execute(text(f"SELECT pg_advisory_unlock({_PG_MIGRATION_LOCK})"))
            return
        path = make_url(self.url).database
        if not path or path == ":memory:":
            yield
            return
        lock = await asyncio.to_thread(_locked_file, Path(f"{path}.migrate.lock"))
        try:
            yield
        finally:
            lock.close()  # releases the lock

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


def _locked_file(path: Path) -> IO[str]:
    """The file opened and exclusively `flock`ed (waiting for the current holder)."""
    handle = path.open("a")
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
    except BaseException:
        handle.close()
        raise
    return handle


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()
