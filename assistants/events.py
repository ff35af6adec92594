"""Run events: the official stream event names, kept per run so any number of readers follow.

A run's events go into one in-memory log. A reader starts at a position and reads until the
run pauses (`thread.run.requires_action`) or ends; `done` closes every stream. The bot reads the
log in-process; the REST API turns the same events into SSE.
"""

from __future__ import annotations

import asyncio
import json
import weakref
from collections import deque
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
    """The events of one run, in order, kept until every reader has read them.

    Readers are registered when `follow` is called (when the run starts, or resumes); until
    the first one is, every event is kept (a run announces itself before its creator follows
    it). From then on an event no reader still needs is dropped at once: a long answer
    streaming to one reader holds one delta at a time, not all of them (a delta is four SDK
    models, ~3 KB). `position` counts every event ever appended, dropped or not.
    """

    def __init__(self) -> None:
        self._events: deque[StreamEvent] = deque()
        self._first = 0  # the position of `_events[0]`
        #: Weak: a reader its consumer dropped without closing stops holding events.
        self._readers: weakref.WeakSet[_Reader] = weakref.WeakSet()
        self._followed = False
        self._changed = asyncio.Event()

    def append(self, event: StreamEvent) -> None:
        self._events.append(event)
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()
        self._trim()

    @property
    def position(self) -> int:
        return self._first + len(self._events)

    def __len__(self) -> int:
        """The events held in memory now."""
        return len(self._events)

    def follow(self, start: int = 0) -> AsyncIterator[StreamEvent]:
        """Events from `start` until the run pauses or ends (that event included)."""
        if start < self._first:
            raise ValueError(f"events before {self._first} are gone (asked from {start})")
        reader = _Reader(self, start)
        self._readers.add(reader)
        self._followed = True
        return reader

    def _trim(self) -> None:
        """Drops the events every reader has passed (all of them when nobody reads)."""
        if not self._followed:
            return
        keep_from = min((r.position for r in self._readers), default=self.position)
        while self._first < keep_from and self._events:
            self._events.popleft()
            self._first += 1


class _Reader:
    """One reader's place in a `RunLog` (an async iterator, closed by its last event)."""

    def __init__(self, log: RunLog, start: int) -> None:
        self._log = log
        self.position = start
        self._done = False

    def __aiter__(self) -> _Reader:
        return self

    async def __anext__(self) -> StreamEvent:
        log = self._log
        if self._done:
            raise StopAsyncIteration
        while self.position >= log.position:
            await log._changed.wait()
        event = log._events[self.position - log._first]
        self.position += 1
        if event.event in STREAM_END_EVENTS or event.event == "error":
            await self.aclose()
        else:
            log._trim()
        return event

    async def aclose(self) -> None:
        self._done = True
        self._log._readers.discard(self)
        self._log._trim()


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
