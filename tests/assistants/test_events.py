"""A run's in-memory event log: readers get every event in order, and the log holds only what
some reader has yet to read (a long answer must not pile up its deltas)."""

from __future__ import annotations

import asyncio
import gc

import pytest

from assistants.events import EventHub, RunLog, StreamEvent


def _delta(n: int) -> StreamEvent:
    return StreamEvent("thread.message.delta", {"n": n})


async def _next(events: object) -> StreamEvent:
    return await asyncio.wait_for(anext(events), 1)  # type: ignore[call-overload]


async def test_a_reader_keeping_up_leaves_nothing_behind() -> None:
    log = RunLog()
    events = log.follow(0)
    for n in range(500):
        log.append(_delta(n))
        assert (await _next(events)).data == {"n": n}
        assert len(log) <= 1
    log.append(StreamEvent("thread.run.completed", {}))
    assert (await _next(events)).event == "thread.run.completed"
    with pytest.raises(StopAsyncIteration):
        await _next(events)
    assert len(log) == 0
    assert log.position == 501  # positions count every event, dropped or not


async def test_events_before_the_first_reader_are_kept_for_it() -> None:
    log = RunLog()
    log.append(StreamEvent("thread.run.created", {}))
    log.append(StreamEvent("thread.run.queued", {}))
    events = log.follow(0)
    assert [(await _next(events)).event for _ in range(2)] == [
        "thread.run.created",
        "thread.run.queued",
    ]


async def test_the_slowest_reader_holds_events_until_it_reads_them() -> None:
    log = RunLog()
    fast, slow = log.follow(0), log.follow(0)
    for n in range(10):
        log.append(_delta(n))
        await _next(fast)
    assert len(log) == 10
    assert [(await _next(slow)).data for _ in range(4)] == [{"n": n} for n in range(4)]
    assert len(log) == 6
    await slow.aclose()  # type: ignore[attr-defined]
    assert len(log) == 0


async def test_a_reader_dropped_unclosed_stops_holding_events() -> None:
    log = RunLog()
    events = log.follow(0)
    log.append(_delta(0))
    del events
    gc.collect()
    log.append(_delta(1))
    assert len(log) == 0


async def test_a_reader_from_a_dropped_position_is_refused() -> None:
    log = RunLog()
    events = log.follow(0)
    log.append(_delta(0))
    await _next(events)
    log.append(_delta(1))
    await _next(events)
    with pytest.raises(ValueError, match="gone"):
        log.follow(0)
    later = log.follow(log.position)  # from now on: fine
    log.append(_delta(2))
    assert (await _next(later)).data == {"n": 2}


async def test_a_waiting_reader_wakes_for_the_next_event() -> None:
    hub = EventHub()
    events = hub.log("run_1").follow(0)
    waiting = asyncio.create_task(_next(events))
    await asyncio.sleep(0.01)
    assert not waiting.done()
    hub.publish("run_1", "thread.message.delta", {"n": 0})
    assert (await waiting).data == {"n": 0}
    hub.publish("run_1", "thread.run.failed", {})
    assert (await _next(events)).event == "thread.run.failed"
    assert len(hub) == 0  # a finished run's log is dropped
