"""The run state machine: every status change of a run, its steps and its messages.

    queued -> in_progress -> (requires_action -> queued -> in_progress)*
           -> completed | incomplete | failed | cancelling -> cancelled | expired

Each change is written first, then published, so a reader that sees an event can always
retrieve the state it describes. The runner and the run service both change state through here.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from assistants.clock import Clock
from assistants.events import EventHub
from assistants.leases import Lease, release
from assistants.wire import message_wire, run_wire, step_wire
from storage import Database, MessageRow, RunRow, RunStepRow

__all__ = ["TERMINAL_STATUSES", "RunChanged", "RunLifecycle"]

TERMINAL_STATUSES = frozenset({"completed", "incomplete", "failed", "cancelled", "expired"})

_TIMESTAMP = {
    "completed": "completed_at",
    "incomplete": None,
    "failed": "failed_at",
    "cancelled": "cancelled_at",
    "expired": None,
}
# What happens to a step or message still open when the run ends this way.
_STEP_END = {
    "completed": "completed",
    "incomplete": "completed",
    "failed": "failed",
    "cancelled": "cancelled",
    "expired": "expired",
}
# The statuses each non-terminal move may start from. A move from anywhere else is refused:
# the run changed under the caller (it ended, or another request moved it first).
_MOVES_FROM = {
    "queued": frozenset({"requires_action"}),  # outputs submitted
    "in_progress": frozenset({"queued"}),
    "requires_action": frozenset({"in_progress"}),
    "cancelling": frozenset({"queued", "in_progress", "requires_action"}),
}
_MESSAGE_REASON = {
    "completed": None,
    "incomplete": "max_tokens",
    "failed": "run_failed",
    "cancelled": "run_cancelled",
    "expired": "run_expired",
}


class RunChanged(Exception):
    """A status move was refused: the run is no longer in a status the move may start from
    (it ended, or another request moved it first). `status` is what the run is now."""

    def __init__(self, status: str) -> None:
        super().__init__(f"the run is {status}")
        self.status = status


class RunLifecycle:
    def __init__(self, *, db: Database, clock: Clock, events: EventHub, lease: Lease) -> None:
        self._db, self._clock, self._events, self.lease = db, clock, events, lease
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()

    def publish_run(self, row: RunRow, event: str) -> None:
        self._events.publish(row.id, event, run_wire(row))

    @asynccontextmanager
    async def _transition(self, run_id: str) -> AsyncIterator[tuple[AsyncSession, RunRow]]:
        """One status change of a run, atomic against every other change of the same run.

        Without this, read-check-write races let two changes interleave: a cancel that read
        `in_progress` could overwrite the `completed` the runner had just written (the run
        ended both completed and cancelled), and concurrent cancels were all accepted. The
        per-run lock serialises changes inside this process; the row lock (`FOR UPDATE`,
        PostgreSQL) does the same across processes.
        """
        lock = self._locks.get(run_id)
        if lock is None:
            lock = self._locks[run_id] = asyncio.Lock()
        async with lock, self._db.session() as session:
            yield session, await _load_run(session, run_id, for_update=True)

    async def set_status(self, run_id: str, status: str, *, execute: bool = False) -> RunRow:
        """queued / in_progress / cancelling: non-terminal moves with their event.

        `execute` makes this worker the run's executor (moving to queued or in_progress):
        refused while another live worker holds the run, so no run is ever executed twice.
        Raises `RunChanged` (and changes and publishes nothing) when the run is not in a status
        this move may start from, e.g. it already ended or is already being cancelled.
        """
        async with self._transition(run_id) as (session, row):
            if row.status not in _MOVES_FROM[status]:
                raise RunChanged(row.status)
            if execute:
                if self.lease.held_elsewhere(row):
                    raise RunChanged(row.status)
                self.lease.grant(row)
            row.status = status
            if status == "in_progress" and row.started_at is None:
                row.started_at = self._clock.now()
            if status == "queued":
                row.required_action = None
            session.add(row)
        self.publish_run(row, f"thread.run.{status}")
        return row

    async def require_action(self, run_id: str, tool_calls: list[dict[str, Any]]) -> RunRow:
        """Parks a working run until outputs arrive; a run being cancelled is left alone."""
        async with self._transition(run_id) as (session, row):
            if row.status not in _MOVES_FROM["requires_action"]:
                return row
            row.status = "requires_action"
            release(row)  # whoever receives the outputs executes the rest
            row.required_action = {
                "type": "submit_tool_outputs",
                "submit_tool_outputs": {"tool_calls": tool_calls},
            }
            session.add(row)
        self.publish_run(row, "thread.run.requires_action")
        return row

    async def finish(
        self,
        run_id: str,
        status: str,
        *,
        last_error: dict[str, str] | None = None,
        incomplete_reason: str | None = None,
        if_abandoned: bool = False,
        answer: tuple[RunStepRow, MessageRow] | None = None,
        usage: dict[str, int] | None = None,
    ) -> RunRow:
        """Ends the run: closes its open steps and messages, then the run itself.

        `if_abandoned` ends it only if no worker holds a live lease on it (a takeover).
        `answer` is the executor's word that this step and message (in memory, content set)
        are the run's only open parts: they are ended and written here, without looking the
        open parts up. `usage` is added to the run's.
        """
        async with self._transition(run_id) as (session, row):
            if row.status in TERMINAL_STATUSES:
                return row
            if if_abandoned and not self.lease.lapsed(row):
                return row
            now = self._clock.now()
            steps: Sequence[RunStepRow]
            messages: Sequence[MessageRow]
            if answer is not None:
                steps, messages = [answer[0]], [answer[1]]
            else:
                steps = (
                    await session.exec(
                        select(RunStepRow).where(
                            col(RunStepRow.run_id) == run_id,
                            col(RunStepRow.status) == "in_progress",
                        )
                    )
                ).all()
                messages = (
                    await session.exec(
                        select(MessageRow).where(
                            col(MessageRow.run_id) == run_id,
                            col(MessageRow.status) == "in_progress",
                        )
                    )
                ).all()
            for step in steps:
                _end_step(step, _STEP_END[status], now, last_error)
                session.add(step)
            for message in messages:
                end_message(message, now, _MESSAGE_REASON[status])
                session.add(message)
            if usage:
                row.usage = summed_usage(row.usage, usage)
            row.status = status
            release(row)
            row.required_action = None
            row.last_error = last_error
            if incomplete_reason:
                row.incomplete_details = {"reason": incomplete_reason}
            stamp = _TIMESTAMP[status]
            if stamp:
                setattr(row, stamp, now)
            session.add(row)
        for message in messages:
            self._events.publish(run_id, f"thread.message.{message.status}", message_wire(message))
        for step in steps:
            self._events.publish(run_id, f"thread.run.step.{step.status}", step_wire(step))
        self.publish_run(row, f"thread.run.{status}")
        return row


def summed_usage(total: dict[str, int] | None, usage: dict[str, int]) -> dict[str, int]:
    """`total` with `usage` added, key by key (a new dict: the row sees the change)."""
    summed = dict(total or {})
    for key, value in usage.items():
        summed[key] = summed.get(key, 0) + value
    return summed


def end_message(message: MessageRow, now: int, reason: str | None) -> None:
    if reason is None:
        message.status = "completed"
        message.completed_at = now
    else:
        message.status = "incomplete"
        message.incomplete_at = now
        message.incomplete_details = {"reason": reason}


def _end_step(step: RunStepRow, status: str, now: int, error: dict[str, str] | None) -> None:
    step.status = status
    if status == "completed":
        step.completed_at = now
    elif status == "failed":
        step.failed_at = now
        step.last_error = error
    elif status == "cancelled":
        step.cancelled_at = now
    else:
        step.expired_at = now


async def _load_run(session: AsyncSession, run_id: str, *, for_update: bool = False) -> RunRow:
    statement = select(RunRow).where(col(RunRow.id) == run_id)
    if for_update:
        statement = statement.with_for_update()
    return (await session.exec(statement)).one()
