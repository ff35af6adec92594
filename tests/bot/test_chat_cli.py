"""`slack-assistants chat` in a real pseudo-terminal against the scripted model server."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pexpect
import pytest

from tests.fakes.model_server import ModelFake, ToolCall, text_reply, tool_calls_reply

ASSISTANTS = """\
defaults:
  dm: Math Tutor
assistants:
  - name: Math Tutor
    model: fake-model
    instructions: You are a personal math tutor.
    tools:
      - type: function
        function: get_current_time
  - name: Other
    model: fake-model
    instructions: Other assistant.
"""


@pytest.fixture
def chat_env(tmp_path: Path, model: ModelFake) -> dict[str, str]:
    (tmp_path / "assistants.yml").write_text(ASSISTANTS)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "OPENAI_"))}
    env.update(
        DATA_DIR=str(tmp_path / "data"),
        ASSISTANTS_FILE=str(tmp_path / "assistants.yml"),
        OPENAI_BASE_URL=model.url,
        OPENAI_API_KEY="model-key",
        MODEL_MAX_RETRIES="0",
        DATABASE_URL="",
        PYTHONUNBUFFERED="1",
    )
    if url := os.environ.get("TEST_DATABASE_URL"):
        env["DATABASE_URL"] = url.replace("+psycopg", "")
    return env


def _spawn(env: dict[str, str], *args: str) -> pexpect.spawn:
    return pexpect.spawn(
        sys.executable, ["-m", "bot", "chat", *args], env=env, encoding="utf-8", timeout=20
    )


async def test_chat_streams_answers_and_remembers_the_thread(
    chat_env: dict[str, str], model: ModelFake
) -> None:
    model.script(text_reply("3x = 3, so x = 1."), text_reply("You asked about 3x + 11."))
    child = _spawn(chat_env)
    await child.expect("Chatting with Math Tutor", async_=True)
    await child.expect("you> ", async_=True)
    child.sendline("solve 3x + 11 = 14")
    await child.expect(r"assistant> 3x = 3, so x = 1\.", async_=True)
    await child.expect("you> ", async_=True)
    child.sendline("/quit")
    await child.expect(pexpect.EOF, async_=True)
    child.close()
    assert child.exitstatus == 0

    # A new session continues the remembered thread: the model sees the first exchange.
    child = _spawn(chat_env)
    await child.expect("you> ", async_=True)
    child.sendline("what did I ask?")
    await child.expect("You asked about 3x", async_=True)
    child.sendeof()
    await child.expect(pexpect.EOF, async_=True)
    child.close()
    assert child.exitstatus == 0
    contents = [m["content"] for m in model.requests[-1]["messages"]]
    assert contents == [
        "You are a personal math tutor.",
        "solve 3x + 11 = 14",
        "3x = 3, so x = 1.",
        "what did I ask?",
    ]
    state = json.loads((Path(chat_env["DATA_DIR"]) / "chat.json").read_text())
    assert list(state) == ["Math Tutor"]


async def test_chat_resolves_function_calls_with_builtin_handlers(
    chat_env: dict[str, str], model: ModelFake
) -> None:
    call = ToolCall("get_current_time", json.dumps({"timezone": "Europe/Paris"}))
    model.script(tool_calls_reply(call), text_reply("It is late in Paris."))
    child = _spawn(chat_env, "--new")
    await child.expect("you> ", async_=True)
    child.sendline("what time is it in Paris?")
    await child.expect("It is late in Paris.", async_=True)
    child.sendline("/quit")
    await child.expect(pexpect.EOF, async_=True)
    tool_message = model.requests[-1]["messages"][-1]
    assert tool_message["role"] == "tool" and tool_message["tool_call_id"] == call.id
    assert json.loads(tool_message["content"])["timezone"] == "Europe/Paris"


async def test_chat_names_unknown_assistant(chat_env: dict[str, str]) -> None:
    child = _spawn(chat_env, "--assistant", "Nobody")
    await child.expect("No assistant named 'Nobody'.*Known: Math Tutor, Other", async_=True)
    await child.expect(pexpect.EOF, async_=True)
    child.close()
    assert child.exitstatus == 2
