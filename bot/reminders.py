"""Reminders the model schedules: stored rows, delivered by an APScheduler job.

The row is the durable truth (it survives restarts and is shared by replicas); APScheduler
wakes the bot at each reminder's time, and a periodic sweep delivers anything that came due
while the process was down. Delivery marks the row first, so a reminder is posted once.
"""

from __future__ import annotations

import logging
import re
import secrets
from datetime import UTC, datetime, timedelta

from slack_sdk.web.async_client import AsyncWebClient
from sqlmodel import col, select, update

from assistants import Clock, Scheduler
from storage import Database, ReminderRow

__all__ = ["Reminders", "parse_when"]

log = logging.getLogger("bot.reminders")

_RELATIVE = re.compile(
    r"^\s*(?:in\s+)?(\d+(?:\.\d+)?)\s*"
    r"(s|sec|secs|seconds?|m|min|mins|minutes?|h|hr|hrs|hours?|d|days?)\s*$",
    re.IGNORECASE,
)
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_when(when: str, now: datetime) -> datetime:
    """`in 10 minutes`, `2h`, `30s`, or an ISO 8601 time (naive means UTC)."""
    match = _RELATIVE.match(when)
    if match:
        amount, unit = float(match.group(1)), match.group(2).lower()
        return now + timedelta(seconds=amount * _UNIT_SECONDS[unit[0]])
    try:
        moment = datetime.fromisoformat(when.strip())
    except ValueError as exc:
        raise ValueError(
            f"cannot read the time {when!r}; use ISO 8601 (2026-05-01T09:00:00+02:00) "
            "or a delay like 'in 10 minutes'"
        ) from exc
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


class Reminders:
    def __init__(
        self,
        *,
        db: Database,
        client: AsyncWebClient,
        clock: Clock,
        scheduler: Scheduler,
        sweep_seconds: float = 30.0,
    ) -> None:
        self._db, self._client, self._clock = db, client, clock
        self._scheduler = scheduler
        scheduler.add_job(self.deliver_due, "interval", seconds=sweep_seconds, id="reminder-sweep")

    async def schedule(
        self,
        *,
        team_id: str,
        channel_id: str,
        thread_ts: str | None,
        user_id: str | None,
        text: str,
        due: datetime,
    ) -> ReminderRow:
        row = ReminderRow(
            id=f"rem_{secrets.token_hex(12)}",
            team_id=team_id,
            channel_id=channel_id,
            thread_ts=thread_ts,
            user_id=user_id,
            text=text,
            due_at=int(due.timestamp()),
            created_at=self._clock.now(),
        )
        async with self._db.session() as session:
            session.add(row)
        if self._scheduler.running:
            self._scheduler.add_job(self.deliver_due, "date", run_date=due, id=row.id)
        return row

    async def deliver_due(self) -> int:
        """Posts every reminder whose time has come; returns how many were sent."""
        now = self._clock.now()
        async with self._db.session() as session:
            due = (
                await session.exec(
                    select(ReminderRow).where(
                        col(ReminderRow.status) == "scheduled", col(ReminderRow.due_at) <= now
                    )
                )
            ).all()
        sent = 0
        for row in due:
            async with self._db.session() as session:
                claimed = await session.exec(
                    update(ReminderRow)
                    .where(col(ReminderRow.id) == row.id, col(ReminderRow.status) == "scheduled")
                    .values(status="sent")
                )
            if claimed.rowcount != 1:
                continue  # another sweep or replica took it
            mention = f"<@{row.user_id}> " if row.user_id else ""
            try:
                await self._client.chat_postMessage(
                    channel=row.channel_id,
                    thread_ts=row.thread_ts,
                    text=f":alarm_clock: {mention}Reminder: {row.text}",
                )
                sent += 1
            except Exception:
                log.exception("reminder %s could not be posted", row.id)
                async with self._db.session() as session:
                    await session.exec(
                        update(ReminderRow)
                        .where(col(ReminderRow.id) == row.id)
                        .values(status="failed")
                    )
        return sent
