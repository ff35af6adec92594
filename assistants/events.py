"""Run events: the official stream event names, kept per run so any number of readers follow.

A run's events go into one in-memory log. A reader starts at a position and reads until the
run pauses (`thread.run.requires_action`) or ends; `done` closes every stream. The bot reads the
log in-process; the REST API turns the same events into SSE.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from pydantic import BaseModel

__all__ = ["STREAM_END_EVENTS", "EventHub", "RunLog", "StreamEvent"]

#: Events after which a stream of a run closes: the run waits for outputs or has ended.
STREAM_END_EVENTS = frozenset(
    {
        "thread.run.requires_action",
        "thread.run.completed",
        "thread.run.incomplete",
        "thread.run.failed",
        "thread.run.cancelled",
        "thread.run.expired",
    }
)


@dataclass(frozen=True, slots=True)
class StreamEvent:
    """One event: `event` is the official name, `data` the SDK type it carries."""

    event: str
    data: BaseModel | dict[str, object]

    def payload(self) -> dict[str, object]:
        if isinstance(self.data, BaseModel):
            return self.data.model_dump(mode="json")
        return self.data

    def sse(self) -> bytes:
        body = json.dumps(self.payload(), separators=(",", ":"))
        return f"event: {self.event}\ndata: {body}\n\n".encode()


DONE_SSE = b"event: done\ndata: [DONE]\n\n"


class RunLog:
    """Every event of one run, in order; readers wait for the next one without polling."""

    def __init__(self) -> None:
        self.events: list[StreamEvent] = []
        self._changed = asyncio.Event()

    def append(self, event: StreamEvent) -> None:
        self.events.append(event)
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    @property
    def position(self) -> int:
        return len(self.events)

    async def follow(self, start: int = 0) -> AsyncIterator[StreamEvent]:
        """Events from `start` until the run pauses or ends (that event included)."""
        index = start
        while True:
            while index < len(self.events):
                event = self.events[index]
                index += 1
                yield event
                if event.event in STREAM_END_EVENTS or event.event == "error":
                    return
            await self._changed.wait()


class EventHub:
    """The logs of runs that are not finished; a finished run's log is dropped.

    `sink` also receives every event (the durable log other processes read).
    """

    def __init__(self, sink: Callable[[str, StreamEvent], None] | None = None) -> None:
        self._logs: dict[str, RunLog] = {}
        self._sink = sink

    def log(self, run_id: str) -> RunLog:
        log = self._logs.get(run_id)
        if log is None:
            log = self._logs[run_id] = RunLog()
        return log

    def publish(self, run_id: str, event: str, data: BaseModel | dict[str, object]) -> None:
        log = self.log(run_id)
        stream_event = StreamEvent(event, data)
        log.append(stream_event)
        if self._sink is not None:
            self._sink(run_id, stream_event)
        if event in STREAM_END_EVENTS and event != "thread.run.requires_action":
            # Readers keep their reference; new readers of a finished run get nothing to wait for.
            self._logs.pop(run_id, None)

    def abandon(self, run_id: str, message: str) -> None:
        """Ends the streams of a run whose task stopped without a last event (its database
        writes failed): readers get an `error` event instead of waiting forever."""
        if run_id in self._logs:
            self.publish(run_id, "error", {"code": "server_error", "message": message})
            self._logs.pop(run_id, None)

    def __len__(self) -> int:
        return len(self._logs)
