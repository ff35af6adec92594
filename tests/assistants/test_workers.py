"""Two engines on one database, as two replicas would be: a run is executed by exactly one of
them, followed from the other through the durable event log, cancelled across them, and taken
over when its worker stops renewing its lease."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import openai
import pytest
from sqlmodel import col, select, update

from assistants import (
    AssistantCreate,
    Engine,
    ManualClock,
    MessageCreate,
    RunCreate,
    RunnerConfig,
    ThreadCreate,
)
from assistants.events import StreamEvent
from assistants.leases import Lease
from assistants.vector_store_params import VectorStoreCreate
from storage import Database, RunEventRow, RunRow, VectorStoreFileRow
from tests.assistants.test_runs_seed_flows import hosted_text_run_events
from tests.conftest import API_KEY, serve_api
from tests.fakes.model_server import ModelFake, ToolCall, text_reply, tool_calls_reply


async def _engine(
    database: Database,
    model_client: openai.AsyncOpenAI,
    clock: ManualClock,
    data: Path,
    *,
    name: str,
    room: int = 1000,
    lease_seconds: float = 15.0,
) -> Engine:
    engine = Engine(
        db=database,
        model=model_client,
        clock=clock,
        data_dir=data,
        config=RunnerConfig(max_active_runs=room),
        lease=Lease(worker_id=name, seconds=lease_seconds),
        claim_interval=0.1,
    )
    await engine.start()
    return engine


@pytest.fixture
async def front(
    database: Database, model_client: openai.AsyncOpenAI, clock: ManualClock, tmp_path: Path
) -> AsyncIterator[Engine]:
    """A replica with no room for runs: everything it creates is executed elsewhere."""
    engine = await _engine(database, model_client, clock, tmp_path / "a", name="front", room=0)
    yield engine
    await engine.close()


@pytest.fixture
async def worker(
    database: Database, model_client: openai.AsyncOpenAI, clock: ManualClock, tmp_path: Path
) -> AsyncIterator[Engine]:
    engine = await _engine(database, model_client, clock, tmp_path / "b", name="worker")
    yield engine
    await engine.close()


@pytest.fixture
async def front_client(front: Engine) -> AsyncIterator[openai.AsyncOpenAI]:
    async with serve_api(front) as url:
        sdk = openai.AsyncOpenAI(base_url=url, api_key=API_KEY)
        yield sdk
        await sdk.close()


def _count_starts(engine: Engine) -> list[str]:
    started: list[str] = []
    original: Callable[[str], None] = engine.runner.start

    def start(run_id: str) -> None:
        started.append(run_id)
        original(run_id)

    engine.runner.start = start  # type: ignore[method-assign]
    return started


async def test_sse_on_one_replica_follows_a_run_executed_by_another(
    front_client: openai.AsyncOpenAI, front: Engine, worker: Engine, model: ModelFake
) -> None:
    executed_by_worker = _count_starts(worker)
    executed_by_front = _count_starts(front)
    assistant = await front_client.beta.assistants.create(model="fake-model")
    thread = await front_client.beta.threads.create(
        messages=[{"role": "user", "content": "Tell me"}]
    )
    scripted = "Followed across processes, in order, with nothing missing."
    model.script(text_reply(scripted, chunk_size=3))

    names: list[str] = []
    text = ""
    async with front_client.beta.threads.runs.stream(
        thread_id=thread.id, assistant_id=assistant.id
    ) as stream:
        async for event in stream:
            names.append(event.event)
            if event.event == "thread.message.delta":
                text += event.data.delta.content[0].text.value  # type: ignore[union-attr,index,operator]
        run = await stream.get_final_run()

    deltas = names.count("thread.message.delta")
    assert deltas >= 1
    assert names == hosted_text_run_events(deltas)
    assert text == scripted
    assert run.status == "completed"
    assert executed_by_worker == [run.id] and executed_by_front == []


async def test_tool_outputs_submitted_to_one_replica_resume_the_run_on_another(
    front_client: openai.AsyncOpenAI, worker: Engine, model: ModelFake
) -> None:
    assistant = await front_client.beta.assistants.create(
        model="fake-model",
        tools=[{"type": "function", "function": {"name": "get_weather"}}],
    )
    thread = await front_client.beta.threads.create(
        messages=[{"role": "user", "content": "Weather?"}]
    )
    model.script(
        tool_calls_reply(ToolCall("get_weather", json.dumps({"city": "Paris"}))),
        text_reply("Sunny in Paris."),
    )
    run = await front_client.beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id=assistant.id, poll_interval_ms=20
    )
    assert run.status == "requires_action" and run.required_action is not None
    call = run.required_action.submit_tool_outputs.tool_calls[0]

    names: list[str] = []
    async with front_client.beta.threads.runs.submit_tool_outputs_stream(
        run_id=run.id,
        thread_id=thread.id,
        tool_outputs=[{"tool_call_id": call.id, "output": "sun"}],
    ) as stream:
        async for event in stream:
            names.append(event.event)
        final = await stream.get_final_run()

    assert final.status == "completed"
    assert names[:2] == ["thread.run.step.completed", "thread.run.queued"]
    assert names[2] == "thread.run.in_progress" and names[-1] == "thread.run.completed"
    messages = await front_client.beta.threads.messages.list(thread.id)
    assert messages.data[0].content[0].text.value == "Sunny in Paris."  # type: ignore[union-attr]


async def test_every_reader_of_a_run_is_woken_by_its_next_event(
    database: Database, front: Engine, worker: Engine
) -> None:
    """Two readers that began waiting at different times both see a new event at once, not at
    their next poll (0.25 s): they once shared one wake-up, which the first to reach its poll
    replaced, leaving the other waiting on one nobody would set."""
    # PostgreSQL wakes readers in other processes (NOTIFY); SQLite only those of the writer.
    writer = front if database.is_sqlite else worker
    run_id = "run_read_twice"

    async def receive(position: int) -> float:
        events = await front.runs.follow(run_id, position)
        await anext(events)
        return time.monotonic()

    delta = StreamEvent(
        "thread.message.delta",
        {
            "id": "msg_1",
            "object": "thread.message.delta",
            "delta": {"content": [{"index": 0, "type": "text", "text": {"value": "x"}}]},
        },
    )
    for position in range(4):  # each round would fail by luck alone only now and then
        first = asyncio.create_task(receive(position))
        await asyncio.sleep(0.2)
        second = asyncio.create_task(receive(position))
        await asyncio.sleep(0.07)  # the first's poll has ended: it is waiting anew
        writer.event_log.add(run_id, delta)
        await writer.event_log.flush()
        # From the moment the write is done: how long the write itself takes (a busy host
        # stalled it a second once) is not what this is about.
        written = time.monotonic()
        latencies = [t - written for t in await asyncio.gather(first, second)]
        assert max(latencies) < 0.15, (position, latencies)


async def test_cancel_on_one_replica_stops_the_run_where_it_executes(
    front_client: openai.AsyncOpenAI, front: Engine, worker: Engine, model: ModelFake
) -> None:
    model.token_interval = 0.05
    assistant = await front_client.beta.assistants.create(model="fake-model")
    thread = await front_client.beta.threads.create(messages=[{"role": "user", "content": "Go"}])
    model.script(text_reply("word " * 400, chunk_size=5))
    run = await front_client.beta.threads.runs.create(
        thread_id=thread.id, assistant_id=assistant.id
    )
    for _ in range(100):
        if worker.runner.is_running(run.id):
            break
        await asyncio.sleep(0.05)
    assert worker.runner.is_running(run.id)

    cancelling = await front_client.beta.threads.runs.cancel(run.id, thread_id=thread.id)
    assert cancelling.status == "cancelling"
    done = await front_client.beta.threads.runs.poll(
        run.id, thread_id=thread.id, poll_interval_ms=50
    )
    assert done.status == "cancelled"
    assert not worker.runner.is_running(run.id)


async def test_a_run_whose_worker_died_mid_answer_fails_cleanly_on_takeover(
    database: Database,
    model_client: openai.AsyncOpenAI,
    clock: ManualClock,
    tmp_path: Path,
    model: ModelFake,
) -> None:
    dying = await _engine(
        database, model_client, clock, tmp_path / "d", name="dying", lease_seconds=0.5
    )
    model.token_interval = 0.05
    model.script(text_reply("word " * 400, chunk_size=5))
    assistant = await dying.assistants.create(AssistantCreate(model="fake-model"))
    thread = await dying.threads.create(ThreadCreate())
    await dying.messages.create(thread.id, MessageCreate(role="user", content="Go"))
    events = await dying.runs.create_stream(thread.id, RunCreate(assistant_id=assistant.id))
    async for event in events:
        if event.event == "thread.message.delta":
            break
    run_id = dying.runner.running[0]
    # A kill -9 as far as the database can tell: the task stops without writing anything more
    # and nobody renews the lease.
    await dying.runner.stop(run_id, status="taken")
    await dying.close()

    survivor = await _engine(database, model_client, clock, tmp_path / "s", name="survivor")
    try:
        followed = [e.event async for e in await survivor.runs.follow(run_id)]
        async with database.session() as session:
            row = (await session.exec(select(RunRow).where(col(RunRow.id) == run_id))).one()
    finally:
        await survivor.close()
    assert row.status == "failed" and row.worker_id is None
    assert row.last_error is not None and "stopped before it finished" in row.last_error["message"]
    assert followed[:3] == ["thread.run.created", "thread.run.queued", "thread.run.in_progress"]
    assert "thread.message.delta" in followed
    assert followed[-3:] == [
        "thread.message.incomplete",
        "thread.run.step.failed",
        "thread.run.failed",
    ]


async def test_a_queued_run_of_a_dead_worker_is_executed_by_another(
    database: Database,
    model_client: openai.AsyncOpenAI,
    clock: ManualClock,
    tmp_path: Path,
    model: ModelFake,
) -> None:
    front = await _engine(database, model_client, clock, tmp_path / "f", name="f", room=0)
    try:
        assistant = await front.assistants.create(AssistantCreate(model="fake-model"))
        thread = await front.threads.create(ThreadCreate())
        await front.messages.create(thread.id, MessageCreate(role="user", content="Hi"))
        run = await front.runs.create(thread.id, RunCreate(assistant_id=assistant.id))
        async with database.session() as session:  # held by a worker that then vanished
            await session.exec(
                update(RunRow)
                .where(col(RunRow.id) == run.id)
                .values(worker_id="gone", lease_expires_at=Lease.now() - 1)
            )
        model.script(text_reply("Done by the survivor."))
        survivor = await _engine(database, model_client, clock, tmp_path / "s", name="s")
        try:
            events = [e.event async for e in await front.runs.follow(run.id)]
        finally:
            await survivor.close()
        assert events[-1] == "thread.run.completed"
        async with database.session() as session:
            positions = (
                await session.exec(
                    select(RunEventRow.position)
                    .where(col(RunEventRow.run_id) == run.id)
                    .order_by(col(RunEventRow.seq))
                )
            ).all()
        assert list(positions) == list(range(len(positions)))
    finally:
        await front.close()


async def test_the_orphan_sweep_spares_young_blobs_another_replica_may_be_writing(
    engine: Engine, tmp_path: Path
) -> None:
    root = tmp_path / "data" / "files"
    root.mkdir(parents=True, exist_ok=True)
    hour_ago = time.time() - 3700
    old_orphan, old_part = root / "file-gone", root / "file-crashed.part"
    young_orphan, young_part = root / "file-committing", root / "file-uploading.part"
    for path in (old_orphan, old_part, young_orphan, young_part):
        path.write_bytes(b"x")
    for path in (old_orphan, old_part):
        os.utime(path, (hour_ago, hour_ago))

    assert await engine.files.sweep_orphans() == 2
    assert sorted(p.name for p in root.iterdir()) == ["file-committing", "file-uploading.part"]


async def test_files_whose_indexer_died_are_indexed_by_another_process_only(
    engine: Engine,
) -> None:
    store = await engine.vector_stores.create(VectorStoreCreate())
    orphaned = await engine.files.create_bytes("dead.txt", "assistants", b"Otters hold hands.")
    busy = await engine.files.create_bytes("busy.txt", "assistants", b"Badgers dig setts.")
    async with engine.db.session() as session:
        for file_id, worker, lease in (
            (orphaned.id, "gone", Lease.now() - 1),  # its indexer stopped renewing
            (busy.id, "alive", Lease.now() + 60),  # another live process indexes it
        ):
            session.add(
                VectorStoreFileRow(
                    vector_store_id=store.id,
                    file_id=file_id,
                    created_at=0,
                    chunking_strategy={"type": "auto"},
                    worker_id=worker,
                    lease_expires_at=lease,
                )
            )

    await engine.vector_stores.take_over()
    await engine.vector_stores.idle()

    async with engine.db.session() as session:
        rows = (await session.exec(select(VectorStoreFileRow))).all()
    status = {row.file_id: (row.status, row.worker_id) for row in rows}
    assert status[orphaned.id] == ("completed", engine.lease.worker_id)
    assert status[busy.id] == ("in_progress", "alive")


async def test_leases_stay_alive_while_the_event_loop_is_too_busy_to_renew_them(
    database: Database,
    model_client: openai.AsyncOpenAI,
    clock: ManualClock,
    tmp_path: Path,
    model: ModelFake,
) -> None:
    busy = await _engine(
        database, model_client, clock, tmp_path / "b", name="busy", lease_seconds=0.6
    )
    try:
        model.token_interval = 0.05
        model.script(text_reply("word " * 200, chunk_size=5))
        assistant = await busy.assistants.create(AssistantCreate(model="fake-model"))
        thread = await busy.threads.create(ThreadCreate())
        await busy.messages.create(thread.id, MessageCreate(role="user", content="Go"))
        run = await busy.runs.create(thread.id, RunCreate(assistant_id=assistant.id))
        for _ in range(100):
            if busy.runner.is_running(run.id):
                break
            await asyncio.sleep(0.02)
        time.sleep(1.5)  # noqa: ASYNC251 (the point: the loop is stuck for 2.5 leases)
        async with database.session() as session:
            row = (await session.exec(select(RunRow).where(col(RunRow.id) == run.id))).one()
        assert row.worker_id == "busy" and row.status in ("queued", "in_progress")
        assert row.lease_expires_at is not None and row.lease_expires_at > Lease.now()
    finally:
        await busy.close()
