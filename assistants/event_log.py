"""The durable side of run events: every event is also written to `run_event`, so a reader in
another process (an SSE client or the bot on another replica) follows a run in order.

Writing is batched: `publish` only queues the event; a flusher writes everything queued in one
transaction every `interval` seconds (and at once for the event that ends a stream), merging
consecutive text deltas of a message into one row. Positions number a run's events from 0 across
processes: a process continuing a run another one started reads where the log ends. On
PostgreSQL every flush also sends `NOTIFY run_events, '<run id>'`, which wakes readers in other
processes; elsewhere, and as a safety net, readers poll.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import weakref
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from openai.types.beta import AssistantStreamEvent
from pydantic import TypeAdapter
from sqlalchemy import delete, func, insert, text
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

from assistants.events import STREAM_END_EVENTS, StreamEvent
from storage import DATABASE_UNAVAILABLE, Database, RunEventRow, RunRow

__all__ = ["EventLog"]

log = logging.getLogger("assistants.event_log")

_CHANNEL = "run_events"
#: The log cannot be written now (database away or overloaded): its events stay queued.
_UNWRITABLE: tuple[type[Exception], ...] = (*DATABASE_UNAVAILABLE, OSError)
_KEPT_QUEUED: tuple[type[BaseException], ...] = (*_UNWRITABLE, asyncio.CancelledError)
_EVENT_TABLE = RunEventRow.__table__  # type: ignore[attr-defined]
_EVENTS: TypeAdapter[Any] = TypeAdapter(AssistantStreamEvent)
#: Statuses in which a run's stream has nothing more to say until someone acts.
_QUIET_STATUSES = frozenset(
    {"requires_action", "completed", "incomplete", "failed", "cancelled", "expired"}
)


@dataclass(slots=True)
class _Pending:
    run_id: str
    event: str
    data: dict[str, Any]


class EventLog:
    def __init__(
        self,
        db: Database,
        *,
        interval: float = 0.05,
        poll: float = 0.25,
        keep_seconds: int = 3600,
        run_wire: Callable[[RunRow], Any],
    ) -> None:
        self._db, self._interval, self._poll, self._keep = db, interval, poll, keep_seconds
        self._run_wire = run_wire
        self._queue: list[_Pending] = []
        self._next: dict[str, int] = {}  # next position of runs this process writes to
        self._urgent = asyncio.Event()
        # Per run, the event its next write sets. Every reader of the run waits on the same one,
        # so one write wakes them all; held weakly, it goes when its last reader does.
        self._wakeups: weakref.WeakValueDictionary[str, asyncio.Event] = (
            weakref.WeakValueDictionary()
        )
        self._tasks: list[asyncio.Task[None]] = []
        self._flush_lock = asyncio.Lock()
        self._closing = False

    # -- writing ------------------------------------------------------------------------

    def begin(self, run_id: str) -> None:
        """A run created here: its log starts at 0 (saves looking up where it ends)."""
        self._next[run_id] = 0

    def add(self, run_id: str, event: StreamEvent) -> None:
        self._queue.append(_Pending(run_id, event.event, event.payload()))
        if event.event in STREAM_END_EVENTS or event.event == "error":
            self._urgent.set()

    def start(self) -> None:
        if not self._tasks:
            self._tasks.append(asyncio.create_task(self._flush_forever(), name="event log"))
            if not self._db.is_sqlite:
                self._tasks.append(asyncio.create_task(self._listen(), name="event listen"))

    async def close(self) -> None:
        """Writes what is queued and stops. The flusher is let finish its write rather than
        cancelled in the middle of it (which could lose the batch it holds)."""
        self._closing = True
        self._urgent.set()
        for task in self._tasks:
            if task.get_name() == "event log":
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(task), 5.0)
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        with contextlib.suppress(*_UNWRITABLE):
            await self.flush()

    async def flush(self) -> None:
        """Writes everything queued so far (kept queued, and retried, if the write fails)."""
        async with self._flush_lock:
            if not self._queue:
                return
            batch, self._queue = _coalesce(self._queue), []
            try:
                await self._write(batch)
            except _KEPT_QUEUED:
                self._queue[:0] = batch  # the database is away, or we stop: keep them, in order
                raise
        for run_id in {p.run_id for p in batch}:
            self._wake(run_id)

    async def _write(self, batch: list[_Pending]) -> None:
        for attempt in range(3):
            try:
                await self._insert(batch)
                return
            except IntegrityError:
                # Another process wrote events of one of these runs meanwhile (a cancel, say):
                # look up where each log ends now and write after it.
                for pending in batch:
                    self._next.pop(pending.run_id, None)
                if attempt == 2:
                    raise

    async def _insert(self, batch: list[_Pending]) -> None:
        now = int(time.time())
        unknown = {p.run_id for p in batch if p.run_id not in self._next}
        async with self._db.session() as session:
            if unknown:
                statement = (
                    select(RunEventRow.run_id, func.max(RunEventRow.position))
                    .where(col(RunEventRow.run_id).in_(unknown))
                    .group_by(col(RunEventRow.run_id))
                )
                ends = dict((await session.exec(statement)).all())
                for run_id in unknown:
                    end = ends.get(run_id)
                    self._next[run_id] = 0 if end is None else end + 1
            positions = dict(self._next)
            rows = []
            for pending in batch:
                position = positions[pending.run_id]
                positions[pending.run_id] = position + 1
                rows.append(
                    {
                        "run_id": pending.run_id,
                        "position": position,
                        "event": pending.event,
                        "data": pending.data,
                        "created_at": now,
                    }
                )
            # A Core executemany, which SQLAlchemy sends as multi-row INSERTs from one cached
            # compiled statement (the ORM sent an INSERT ... RETURNING per event, and a
            # `.values(rows)` INSERT is compiled afresh for every batch).
            await session.exec(insert(_EVENT_TABLE), params=rows)
            if not self._db.is_sqlite:
                for run_id in {p.run_id for p in batch}:
                    await session.exec(  # type: ignore[call-overload]
                        text("SELECT pg_notify(:channel, :run_id)"),
                        params={"channel": _CHANNEL, "run_id": run_id},
                    )
        self._next.update(positions)
        for pending in batch:  # a paused or ended run may continue elsewhere: forget its end
            if pending.event in STREAM_END_EVENTS:
                self._next.pop(pending.run_id, None)

    async def _flush_forever(self) -> None:
        while not self._closing:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._urgent.wait(), self._interval)
            self._urgent.clear()
            try:
                await self.flush()
            except _UNWRITABLE as exc:
                log.warning("cannot write run events yet (%s); retrying", type(exc).__name__)
                await asyncio.sleep(0.5)

    async def purge(self) -> int:
        """Drops the events of runs long finished (a maintenance job)."""
        async with self._db.session() as session:
            result = await session.exec(
                delete(RunEventRow).where(
                    col(RunEventRow.created_at) < int(time.time()) - self._keep
                )
            )
        return int(result.rowcount or 0)

    # -- reading ------------------------------------------------------------------------

    async def position_of(self, run_id: str, event: str, object_id: str) -> int:
        """Where the run's `event` about `object_id` (a step, a message) is in the log, once
        what is queued is written: a stream that begins with that event starts there, whatever
        this or another process wrote before or after it. The first such event wins (two
        replicas accepting the same outputs at once both write one; the loser's request fails),
        so a stream from here misses nothing."""
        await self.flush()
        async with self._db.session() as session:
            statement = (
                select(RunEventRow.position)
                .where(
                    col(RunEventRow.run_id) == run_id,
                    col(RunEventRow.event) == event,
                    col(RunEventRow.data)["id"].as_string() == object_id,
                )
                .order_by(col(RunEventRow.position))
                .limit(1)
            )
            return (await session.exec(statement)).one()

    async def follow(self, run_id: str, start: int = 0) -> AsyncIterator[StreamEvent]:
        """The run's events from `start`, as written by whichever process executes it, until
        the run pauses or ends. A run that went quiet without its last event in the log (its
        events purged, or written by an older release) ends with an event made from its row."""
        position = start
        idle_since = time.monotonic()
        while True:
            wakeup = self._wakeup(run_id)  # taken before reading: a write meanwhile is not missed
            async with self._db.session() as session:
                statement = (
                    select(RunEventRow.position, RunEventRow.event, RunEventRow.data)
                    .where(col(RunEventRow.run_id) == run_id, col(RunEventRow.position) >= position)
                    .order_by(col(RunEventRow.position))
                    .limit(500)
                )
                rows = (await session.exec(statement)).all()
            for row_position, name, data in rows:
                if row_position != position:
                    break  # a gap: that event's write has not committed yet
                position += 1
                idle_since = time.monotonic()
                yield StreamEvent(name, _model(name, dict(data)))
                if name in STREAM_END_EVENTS or name == "error":
                    return
            if rows and rows[-1][0] >= position:
                continue
            if time.monotonic() - idle_since > 2.0:
                ending = await self._quiet_end(run_id)
                if ending is not None:
                    yield ending
                    return
                idle_since = time.monotonic()
            with contextlib.suppress(TimeoutError):  # the poll: a safety net for a lost NOTIFY
                await asyncio.wait_for(wakeup.wait(), self._poll)

    async def _quiet_end(self, run_id: str) -> StreamEvent | None:
        await self.flush()
        async with self._db.session() as session:
            row = (await session.exec(select(RunRow).where(col(RunRow.id) == run_id))).first()
            if row is None or row.status not in _QUIET_STATUSES:
                return None
            # The end may have been written in the meantime: then the log has it.
            statement = select(func.count()).where(
                col(RunEventRow.run_id) == run_id,
                col(RunEventRow.event) == f"thread.run.{row.status}",
            )
            if (await session.exec(statement)).one():
                return None
        return StreamEvent(f"thread.run.{row.status}", self._run_wire(row))

    def _wakeup(self, run_id: str) -> asyncio.Event:
        wakeup = self._wakeups.get(run_id)
        if wakeup is None:
            wakeup = self._wakeups[run_id] = asyncio.Event()
        return wakeup

    def _wake(self, run_id: str) -> None:
        """Wakes every reader of the run. The event is set once and dropped, never cleared: a
        reader that has not yet looked at it still finds it set; the next wait takes a new one."""
        wakeup = self._wakeups.pop(run_id, None)
        if wakeup is not None:
            wakeup.set()

    async def _listen(self) -> None:
        """Wakes readers when another process wrote events (PostgreSQL NOTIFY); reconnects
        after the database restarts, the polling readers covering the gap."""
        import psycopg
        from sqlalchemy.engine import make_url

        conninfo = make_url(self._db.url).set(drivername="postgresql").render_as_string(False)
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as conn:
                    await conn.execute(f"LISTEN {_CHANNEL}")
                    async for notice in conn.notifies():
                        self._wake(notice.payload)
            except (psycopg.Error, OSError) as exc:
                log.info("event listener reconnecting after %s", type(exc).__name__)
                await asyncio.sleep(1.0)


def _model(name: str, data: dict[str, Any]) -> Any:
    """The SDK type an event carries, as the in-process log holds it."""
    if name == "error":
        return data
    return _EVENTS.validate_python({"event": name, "data": data}).data


def _coalesce(batch: list[_Pending]) -> list[_Pending]:
    """Merges runs of consecutive plain text deltas of one message into one delta."""
    merged: list[_Pending] = []
    for pending in batch:
        previous = merged[-1] if merged else None
        if (
            previous is not None
            and pending.event == previous.event == "thread.message.delta"
            and previous.run_id == pending.run_id
            and _plain_text(previous.data, extending=False) is not None
            and _plain_text(pending.data, extending=True) is not None
            and previous.data["id"] == pending.data["id"]
        ):
            part = previous.data["delta"]["content"][0]
            merged[-1] = _Pending(
                previous.run_id,
                previous.event,
                {
                    **previous.data,
                    "delta": {
                        "content": [
                            {
                                **part,
                                "text": {
                                    **part["text"],
                                    "value": part["text"]["value"]
                                    + pending.data["delta"]["content"][0]["text"]["value"],
                                },
                            }
                        ]
                    },
                },
            )
        else:
            merged.append(pending)
    return merged


def _plain_text(data: dict[str, Any], *, extending: bool) -> str | None:
    """The text of a delta that is one text part and nothing else. Annotations may only be on
    the delta being extended (the hosted API sends its empty list on a message's first delta)."""
    content = (data.get("delta") or {}).get("content") or []
    if len(content) != 1 or content[0].get("type") != "text":
        return None
    text_part = content[0].get("text") or {}
    if extending and "annotations" in text_part:
        return None
    value = text_part.get("value")
    return value if isinstance(value, str) else None
