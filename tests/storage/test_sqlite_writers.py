"""SQLite writers of one process take turns in arrival order, and a turn is never kept by a
transaction that failed or a task that was cancelled (it would stop every later write)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import text

from storage import Database


@pytest.fixture
async def sqlite(tmp_path: Path) -> AsyncIterator[Database]:
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'writers.db'}")
    async with db.session() as session:
        await session.exec(text("CREATE TABLE note (writer TEXT NOT NULL)"))  # type: ignore[call-overload]
    yield db
    await db.dispose()


async def write(db: Database, writer: str, *, hold: float = 0.0) -> float:
    """Inserts a row, keeps the transaction open `hold` seconds; returns when it committed."""
    async with db.session() as session:
        await session.exec(text("INSERT INTO note VALUES (:w)"), params={"w": writer})  # type: ignore[call-overload]
        await asyncio.sleep(hold)
    return time.monotonic()


async def notes(db: Database) -> list[str]:
    async with db.session() as session:
        rows = await session.exec(text("SELECT writer FROM note ORDER BY rowid"))  # type: ignore[call-overload]
        return [row[0] for row in rows]


async def test_waiting_writers_commit_in_arrival_order_right_after_each_other(
    sqlite: Database,
) -> None:
    first = asyncio.create_task(write(sqlite, "first", hold=1.0))
    await asyncio.sleep(0.05)
    waiting = []
    for name in ("a", "b", "c", "d"):
        waiting.append(asyncio.create_task(write(sqlite, name)))
        await asyncio.sleep(0.02)
    released = await first
    committed = await asyncio.gather(*waiting)
    assert await notes(sqlite) == ["first", "a", "b", "c", "d"]
    # SQLite's busy handler would have them asleep for up to 100 ms at a time by now.
    assert committed[-1] - released < 0.05, committed[-1] - released


async def test_a_failed_transaction_gives_its_turn_back(sqlite: Database) -> None:
    with pytest.raises(RuntimeError):
        async with sqlite.session() as session:
            await session.exec(text("INSERT INTO note VALUES ('lost')"))  # type: ignore[call-overload]
            raise RuntimeError("the work failed after its first write")
    await asyncio.wait_for(write(sqlite, "next"), 2)
    assert await notes(sqlite) == ["next"]


async def test_a_cancelled_writer_gives_its_turn_back(sqlite: Database) -> None:
    holder = asyncio.create_task(write(sqlite, "cancelled", hold=30))
    await asyncio.sleep(0.1)
    waiter = asyncio.create_task(write(sqlite, "next"))
    await asyncio.sleep(0.05)
    holder.cancel()
    await asyncio.wait_for(waiter, 2)
    assert await notes(sqlite) == ["next"]
