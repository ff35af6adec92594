"""CPU cost of one small transaction on SQLite, layer by layer: what an answer's ~30 statements
in ~20 transactions cost through the stack the bot uses, and what a rewrite could save.

    python -m bench.sql_cost          # prints one JSON object

Each variant runs the same two transactions many times: read one `slack_thread` row by its
unique key, and insert one `slack_queued_message` row. CPU is the process's (`process_time`:
the event loop's thread and aiosqlite's worker threads together), per transaction:

- `orm_session`: `Database.session()` and SQLModel/ORM statements, as the bot and engine do;
- `core_connection`: the same `Database`'s engine, Core statements on `engine.begin()`;
- `aiosqlite`: one aiosqlite connection, SQL text (the async driver's own thread hops);
- `sqlite3`: the standard library module, synchronous (SQLite itself).
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiosqlite
from sqlalchemy import insert, select
from sqlmodel import col

from storage import Database, QueuedMessageRow, SlackThreadRow

ROUNDS = 2000
_THREADS = SlackThreadRow.__table__  # type: ignore[attr-defined]
_QUEUED = QueuedMessageRow.__table__  # type: ignore[attr-defined]
_READ_SQL = (
    "SELECT seq, engine_thread_id, assistant_name FROM slack_thread "
    "WHERE team_id = ? AND channel_id = ? AND thread_ts = ?"
)
_WRITE_SQL = (
    "INSERT INTO slack_queued_message (team_id, channel_id, thread_ts, reply_thread_ts,"
    " message_ts, user_id, text, status, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def _queued(n: int) -> dict[str, Any]:
    return {
        "team_id": "T1",
        "channel_id": "C1",
        "thread_ts": "1.0",
        "reply_thread_ts": "1.0",
        "message_ts": f"{n}.0",
        "user_id": "U1",
        "text": "hello there",
        "status": "pending",
        "created_at": n,
    }


async def _cpu_per_call(call: Callable[[int], Awaitable[None]], offset: int) -> float:
    for n in range(50):  # warm up: compiled-statement caches, the pool, the driver thread
        await call(offset + n)
    started = time.process_time()
    for n in range(ROUNDS):
        await call(offset + 50 + n)
    return (time.process_time() - started) / ROUNDS


async def _orm(db: Database) -> tuple[float, float]:
    async def read(_n: int) -> None:
        async with db.session() as session:
            statement = select(SlackThreadRow).where(
                col(SlackThreadRow.team_id) == "T1",
                col(SlackThreadRow.channel_id) == "C1",
                col(SlackThreadRow.thread_ts) == "1.0",
            )
            (await session.exec(statement)).first()  # type: ignore[call-overload]

    async def write(n: int) -> None:
        async with db.session() as session:
            session.add(QueuedMessageRow(**_queued(n)))

    return await _cpu_per_call(read, 0), await _cpu_per_call(write, 100_000)


async def _core(db: Database) -> tuple[float, float]:
    statement = select(_THREADS.c.seq, _THREADS.c.engine_thread_id).where(
        _THREADS.c.team_id == "T1", _THREADS.c.channel_id == "C1", _THREADS.c.thread_ts == "1.0"
    )

    async def read(_n: int) -> None:
        async with db.engine.begin() as conn:
            (await conn.execute(statement)).first()

    async def write(n: int) -> None:
        async with db.engine.begin() as conn:
            await conn.execute(insert(_QUEUED), _queued(n))

    return await _cpu_per_call(read, 0), await _cpu_per_call(write, 200_000)


async def _aiosqlite(path: Path) -> tuple[float, float]:
    async with aiosqlite.connect(path, isolation_level=None) as conn:

        async def read(_n: int) -> None:
            async with conn.execute(_READ_SQL, ("T1", "C1", "1.0")) as cursor:
                await cursor.fetchone()

        async def write(n: int) -> None:
            await conn.execute("BEGIN IMMEDIATE")
            await conn.execute(_WRITE_SQL, tuple(_queued(n).values()))
            await conn.execute("COMMIT")

        return await _cpu_per_call(read, 0), await _cpu_per_call(write, 300_000)


def _sqlite3(path: Path) -> tuple[float, float]:
    conn = sqlite3.connect(path, isolation_level=None)
    try:

        def run(call: Callable[[int], None], offset: int) -> float:
            started = time.process_time()
            for n in range(ROUNDS):
                call(offset + n)
            return (time.process_time() - started) / ROUNDS

        def read(_n: int) -> None:
            conn.execute(_READ_SQL, ("T1", "C1", "1.0")).fetchone()

        def write(n: int) -> None:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute(_WRITE_SQL, tuple(_queued(n).values()))
            conn.execute("COMMIT")

        return run(read, 0), run(write, 400_000)
    finally:
        conn.close()


async def measure() -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-sql-") as tmp:
        path = Path(tmp) / "cost.db"
        db = Database(f"sqlite+aiosqlite:///{path}")
        await db.upgrade()
        async with db.session() as session:
            session.add(
                SlackThreadRow(
                    team_id="T1",
                    channel_id="C1",
                    thread_ts="1.0",
                    engine_thread_id="thread_1",
                    assistant_name="Bench",
                    created_at=0,
                )
            )
        variants = {"orm_session": await _orm(db), "core_connection": await _core(db)}
        await db.engine.dispose()
        variants["aiosqlite"] = await _aiosqlite(path)
        variants["sqlite3"] = _sqlite3(path)
    return {
        "scenario": "sql_cost",
        "rounds": ROUNDS,
        "cpu_ms_per_transaction": {
            name: {"read_one_row": round(r * 1000, 3), "insert_one_row": round(w * 1000, 3)}
            for name, (r, w) in variants.items()
        },
    }


if __name__ == "__main__":
    print(json.dumps(asyncio.run(measure())))
