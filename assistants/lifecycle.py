"""The run state machine: every status change of a run, its steps and its messages.

    queued -> in_progress -> (requires_action -> queued -> in_progress)*
           -> completed | incomplete | failed | cancelling -> cancelled | expired

Each change is written first, then published, so a reader that sees an event can always
retrieve the state it describes. The runner and the run service both change state through here.
"""

from __future__ import annotations

from typing import Any

from sqlmodel import col, select

from assistants.clock import Clock
from assistants.events import EventHub
from assistants.wire import message_wire, run_wire, step_wire
from storage import Database, MessageRow, RunRow, RunStepRow

__all__ = ["TERMINAL_STATUSES", "RunLifecycle"]

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
_MESSAGE_REASON = {
    "completed": None,
    "incomplete": "max_tokens",
    "failed": "run_failed",
    "cancelled": "run_cancelled",
    "expired": "run_expired",
}


class RunLifecycle:
    def __init__(self, *, db: Database, clock: Clock, events: EventHub) -> None:
        self._db, self._clock, self._events = db, clock, events

    def publish_run(self, row: RunRow, event: str) -> None:
        self._events.publish(row.id, event, run_wire(row))

    async def set_status(self, run_id: str, status: str) -> RunRow:
        """queued / in_progress / cancelling: non-terminal moves with their event."""
        async with self._db.session() as session:
            row = await _load_run(session, run_id)
            row.status = status
            if status == "in_progress" and row.started_at is None:
                row.started_at = self._clock.now()
            if status == "queued":
                row.required_action = None
            session.add(row)
        self.publish_run(row, f"thread.run.{status}")
        return row

    async def require_action(self, run_id: str, tool_calls: list[dict[str, Any]]) -> RunRow:
        async with self._db.session() as session:
            row = await _load_run(session, run_id)
            row.status = "requires_action"
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
    ) -> RunRow:
        """Ends the run: closes its open steps and messages, then the run itself."""
        now = self._clock.now()
        async with self._db.session() as session:
            row = await _load_run(session, run_id)
            if row.status in TERMINAL_STATUSES:
                return row
            steps = (
                await session.exec(
                    select(RunStepRow).where(
                        col(RunStepRow.run_id) == run_id, col(RunStepRow.status) == "in_progress"
                    )
                )
            ).all()
            messages = (
                await session.exec(
                    select(MessageRow).where(
                        col(MessageRow.run_id) == run_id, col(MessageRow.status) == "in_progress"
                    )
                )
            ).all()
            for step in steps:
                _end_step(step, _STEP_END[status], now, last_error)
                session.add(step)
            for message in messages:
                end_message(message, now, _MESSAGE_REASON[status])
                session.add(message)
            row.status = status
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


async def _load_run(session: Any, run_id: str) -> RunRow:
    return (await session.exec(select(RunRow).where(col(RunRow.id) == run_id))).one()
