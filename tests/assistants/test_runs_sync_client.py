"""A user's plain synchronous script: `openai.OpenAI`, `create_and_poll`, `runs.stream`.

The synchronous client blocks, so the engine, its REST API and the scripted model server run on
their own event loop in a background thread (`served_stack`), the way a user's script would
talk to `slack-assistants serve` in another process. The fixture shuts everything down on that
loop and joins the thread, so no task, socket or database connection outlives the test.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import openai
import pytest
from aiohttp import web
from openai import AssistantEventHandler
from openai.types.beta import AssistantStreamEvent
from openai.types.beta.threads import Text, TextDelta
from sqlalchemy import text

from assistants import Engine, ManualClock
from assistants.api import api_app
from storage import Database
from tests.assistants.test_runs_seed_flows import hosted_text_run_events
from tests.conftest import API_KEY
from tests.fakes.model_server import ModelFake, Reply, run_model_fake, text_reply

T = TypeVar("T")


@dataclass
class ServedStack:
    """Engine + API + model fake living on `loop` in a background thread."""

    loop: asyncio.AbstractEventLoop
    api_url: str
    model: ModelFake
    stop: asyncio.Event
    thread: threading.Thread

    def call(self, fn: Callable[[], T]) -> T:
        """Runs `fn` on the stack's loop (the fake's state belongs to that loop)."""

        async def wrapper() -> T:
            return fn()

        return asyncio.run_coroutine_threadsafe(wrapper(), self.loop).result(timeout=5)

    def script(self, *replies: Reply) -> None:
        self.call(lambda: self.model.script(*replies))

    def requests(self) -> list[dict[str, Any]]:
        return self.call(lambda: list(self.model.requests))


async def _database(tmp_path: Path) -> Database:
    """The same choice as the `database` fixture: PostgreSQL when asked, else a SQLite file."""
    url = os.environ.get("TEST_DATABASE_URL")
    if not url:
        return Database(f"sqlite+aiosqlite:///{tmp_path / 'sync.db'}")
    db = Database(url)
    async with db.engine.begin() as conn:
        await conn.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
        await conn.execute(text("CREATE SCHEMA public"))
    return db


async def _serve(tmp_path: Path, ready: Future[ServedStack]) -> None:
    """Body of the background thread: start everything, wait for `stop`, tear down."""
    stop = asyncio.Event()
    try:
        db = await _database(tmp_path)
        async with run_model_fake() as model:
            model_client = openai.AsyncOpenAI(base_url=model.url, api_key="k", max_retries=2)
            engine = Engine(db=db, model=model_client, clock=ManualClock())
            await engine.start()
            app = web.Application()
            app.add_subapp("/v1", api_app(engine, api_key=API_KEY, poll_after_ms=20))
            runner = web.AppRunner(app)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", 0).start()
            port = runner.addresses[0][1]
            try:
                ready.set_result(
                    ServedStack(
                        loop=asyncio.get_running_loop(),
                        api_url=f"http://127.0.0.1:{port}/v1",
                        model=model,
                        stop=stop,
                        thread=threading.current_thread(),
                    )
                )
                await stop.wait()
            finally:
                await runner.cleanup()
                await engine.close()
                await model_client.close()
                await db.dispose()
    except BaseException as exc:
        if not ready.done():
            ready.set_exception(exc)
        raise


@pytest.fixture
def served_stack(tmp_path: Path) -> Iterator[ServedStack]:
    ready: Future[ServedStack] = Future()
    failure: list[BaseException] = []

    def main() -> None:
        try:
            asyncio.run(_serve(tmp_path, ready))
        except BaseException as exc:  # reported by the fixture's teardown
            failure.append(exc)

    thread = threading.Thread(target=main, name="assistants-stack", daemon=True)
    thread.start()
    stack = ready.result(timeout=30)
    try:
        yield stack
    finally:
        stack.loop.call_soon_threadsafe(stack.stop.set)
        thread.join(timeout=30)
        assert not thread.is_alive(), "the background stack did not shut down"
        assert not failure, f"the background stack failed: {failure!r}"


@pytest.fixture
def sync_client(served_stack: ServedStack) -> Iterator[openai.OpenAI]:
    client = openai.OpenAI(base_url=served_stack.api_url, api_key=API_KEY, max_retries=0)
    yield client
    client.close()


class PrintingHandler(AssistantEventHandler):
    """What OpenAI's quickstart does: print text as it streams (here: collect it)."""

    def __init__(self) -> None:
        super().__init__()
        self.names: list[str] = []
        self.calls: list[str] = []
        self.deltas: list[str] = []

    def on_event(self, event: AssistantStreamEvent) -> None:
        self.names.append(event.event)

    def on_text_created(self, text: Text) -> None:
        self.calls.append("text_created")

    def on_text_delta(self, delta: TextDelta, snapshot: Text) -> None:
        self.calls.append("text_delta")
        self.deltas.append(delta.value or "")


def test_sync_create_and_poll(served_stack: ServedStack, sync_client: openai.OpenAI) -> None:
    assistant = sync_client.beta.assistants.create(
        name="Math Tutor", instructions="You are a personal math tutor.", model="fake-model"
    )
    thread = sync_client.beta.threads.create()
    sync_client.beta.threads.messages.create(
        thread_id=thread.id, role="user", content="I need to solve 3x + 11 = 14."
    )
    served_stack.script(text_reply("x = 1"))

    run = sync_client.beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id=assistant.id
    )

    assert run.status == "completed"
    messages = sync_client.beta.threads.messages.list(thread_id=thread.id)
    assert [m.role for m in messages.data] == ["assistant", "user"]
    reply = messages.data[0]
    assert reply.run_id == run.id and reply.assistant_id == assistant.id
    assert reply.content[0].text.value == "x = 1"  # type: ignore[union-attr]
    sent = served_stack.requests()
    assert sent[0]["messages"][0] == {"role": "system", "content": "You are a personal math tutor."}


def test_sync_stream_with_event_handler(
    served_stack: ServedStack, sync_client: openai.OpenAI
) -> None:
    assistant = sync_client.beta.assistants.create(model="fake-model", instructions="Be brief.")
    thread = sync_client.beta.threads.create()
    sync_client.beta.threads.messages.create(thread_id=thread.id, role="user", content="Hi")
    served_stack.script(text_reply("Hello from a synchronous stream.", chunk_size=6))

    handler = PrintingHandler()
    with sync_client.beta.threads.runs.stream(
        thread_id=thread.id, assistant_id=assistant.id, event_handler=handler
    ) as stream:
        stream.until_done()
        final = stream.get_final_run()

    assert final.status == "completed"
    assert handler.calls[0] == "text_created"
    assert set(handler.calls[1:]) == {"text_delta"}
    assert "".join(handler.deltas) == "Hello from a synchronous stream."
    # the hosted order (FACTS.md §1), as the sync SDK delivers it
    assert handler.names == hosted_text_run_events(len(handler.deltas))
    assert len(handler.deltas) == len(range(0, len("Hello from a synchronous stream."), 6))
    listed = sync_client.beta.threads.messages.list(thread_id=thread.id)
    assert listed.data[0].content[0].text.value == "Hello from a synchronous stream."  # type: ignore[union-attr]
