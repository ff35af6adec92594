"""code_interpreter through the official SDK: the Math Tutor seed, state, plots and files.

Needs the sandbox of scripts/build-sandbox (bubblewrap, the sandbox venv); `.ci/run` builds it.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import openai
import pytest

from assistants import Engine, ManualClock, SandboxConfig
from tests.assistants.sandbox.sandbox_support import PYTHON, make_root, require_sandbox
from tests.fakes.model_server import ModelFake, ToolCall, text_reply, tool_calls_reply


def sandbox_config(root: Path) -> SandboxConfig:
    """A sandbox for these tests (skipped where none can run, failed if SANDBOX_REQUIRED=1)."""
    config = SandboxConfig(root=root, python=PYTHON, max_kernels=3, exec_timeout=20)
    require_sandbox(config)
    return config


@pytest.fixture
async def engine(  # overrides the shared fixture: this engine has a sandbox
    database: object, model_client: openai.AsyncOpenAI, clock: ManualClock, tmp_path: Path
) -> AsyncIterator[Engine]:
    root = make_root()  # the sandbox uid must be able to reach it (tmp_path is 0700)
    engine = Engine(
        db=database,  # type: ignore[arg-type]
        model=model_client,
        clock=clock,
        data_dir=tmp_path / "data",
        sandbox=sandbox_config(root),
    )
    try:
        await engine.start()
        yield engine
        await engine.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _code(source: str) -> ToolCall:
    return ToolCall("code_interpreter", json.dumps({"code": source}))


async def _tutor(client: openai.AsyncOpenAI) -> str:
    assistant = await client.beta.assistants.create(
        name="Math Tutor",
        instructions="You are a personal math tutor. Write and run code to answer math questions.",
        tools=[{"type": "code_interpreter"}],
        model="fake-model",
    )
    return assistant.id


async def test_math_tutor_seed_streams_code_and_logs(
    client: openai.AsyncOpenAI, model: ModelFake
) -> None:
    assistant_id = await _tutor(client)
    thread = await client.beta.threads.create()
    await client.beta.threads.messages.create(
        thread.id,
        role="user",
        content="I need to solve the equation `3x + 11 = 14`. Can you help me?",
    )
    model.script(tool_calls_reply(_code("x = (14 - 11) / 3\nprint(x)")), text_reply("x = 1"))

    seen: list[str] = []

    class EventHandler(openai.AsyncAssistantEventHandler):
        async def on_tool_call_created(self, tool_call) -> None:  # type: ignore[no-untyped-def]
            seen.append(f"created {tool_call.type}")

        async def on_tool_call_delta(self, delta, snapshot) -> None:  # type: ignore[no-untyped-def]
            if delta.type == "code_interpreter" and delta.code_interpreter:
                if delta.code_interpreter.input:
                    seen.append(f"input {delta.code_interpreter.input}")
                for output in delta.code_interpreter.outputs or []:
                    if output.type == "logs":
                        seen.append(f"logs {output.logs}")

    async with client.beta.threads.runs.stream(
        thread_id=thread.id, assistant_id=assistant_id, event_handler=EventHandler()
    ) as stream:
        await stream.until_done()

    assert seen == [
        "created code_interpreter",
        "input x = (14 - 11) / 3\nprint(x)",
        "logs 1.0",
    ]
    run = (await client.beta.threads.runs.list(thread.id)).data[0]
    steps = await client.beta.threads.runs.steps.list(
        run_id=run.id, thread_id=thread.id, order="asc"
    )
    call = steps.data[0].step_details.tool_calls[0]  # type: ignore[union-attr]
    assert call.code_interpreter.input == "x = (14 - 11) / 3\nprint(x)"  # type: ignore[union-attr]
    assert call.code_interpreter.outputs[0].logs == "1.0"  # type: ignore[union-attr]
    tool_message = model.requests[1]["messages"][-1]
    assert tool_message["role"] == "tool" and tool_message["content"].startswith("1.0")


async def test_state_persists_per_thread_only(client: openai.AsyncOpenAI, model: ModelFake) -> None:
    assistant_id = await _tutor(client)
    first = await client.beta.threads.create(messages=[{"role": "user", "content": "set"}])
    other = await client.beta.threads.create(messages=[{"role": "user", "content": "read"}])
    model.script(
        tool_calls_reply(_code("x = 41")),
        text_reply("set"),
        tool_calls_reply(_code("x + 1")),
        text_reply("42"),
        tool_calls_reply(_code("x")),
        text_reply("no x"),
    )
    for thread_id, text in ((first.id, None), (first.id, "again"), (other.id, None)):
        if text:
            await client.beta.threads.messages.create(thread_id, role="user", content=text)
        run = await client.beta.threads.runs.create_and_poll(
            thread_id=thread_id, assistant_id=assistant_id
        )
        assert run.status == "completed", run.last_error
    outputs = [
        m["messages"][-1]["content"] for m in model.requests if m["messages"][-1]["role"] == "tool"
    ]
    assert outputs[1].startswith("42")
    assert "NameError" in outputs[2]


async def test_plot_becomes_image_file_and_csv_a_file_path(
    client: openai.AsyncOpenAI, model: ModelFake
) -> None:
    assistant_id = await _tutor(client)
    thread = await client.beta.threads.create(
        messages=[{"role": "user", "content": "plot and csv"}]
    )
    code = (
        "import matplotlib.pyplot as plt, pandas as pd\n"
        "plt.plot([0, 1, 2], [0, 1, 4]); plt.show()\n"
        "pd.DataFrame({'x': [1, 2]}).to_csv('/mnt/data/squares.csv', index=False)\n"
    )
    model.script(
        tool_calls_reply(_code(code)),
        text_reply("Here is the plot and [the data](sandbox:/mnt/data/squares.csv)."),
    )
    run = await client.beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id=assistant_id
    )
    assert run.status == "completed", run.last_error
    message = (await client.beta.threads.messages.list(thread.id)).data[0]
    image, text = message.content
    assert image.type == "image_file"
    png = await client.files.content(image.image_file.file_id)  # type: ignore[union-attr]
    assert png.content.startswith(b"\x89PNG")
    [annotation] = text.text.annotations  # type: ignore[union-attr]
    assert annotation.type == "file_path" and annotation.text == "sandbox:/mnt/data/squares.csv"
    csv = await client.files.content(annotation.file_path.file_id)  # type: ignore[union-attr]
    assert csv.content.decode().split() == ["x", "1", "2"]


async def test_deleting_the_thread_deletes_its_working_folder(
    client: openai.AsyncOpenAI, model: ModelFake, engine: Engine
) -> None:
    assistant_id = await _tutor(client)
    thread = await client.beta.threads.create(messages=[{"role": "user", "content": "save"}])
    model.script(
        tool_calls_reply(_code("open('/mnt/data/note.txt', 'w').write('hi')")), text_reply("ok")
    )
    run = await client.beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id=assistant_id
    )
    assert run.status == "completed", run.last_error
    folder = engine.sandbox.workdir(thread.id)
    assert (folder / "note.txt").read_text() == "hi"

    await client.beta.threads.delete(thread.id)
    assert not folder.exists()
