"""The seed flow end to end: the SDK creates, runs and reads back a conversation."""

from __future__ import annotations

import openai

from tests.fakes.model_server import ModelFake, text_reply


async def test_create_and_poll_answers_with_model_text(
    client: openai.AsyncOpenAI, model: ModelFake
) -> None:
    assistant = await client.beta.assistants.create(model="fake-model", instructions="Be brief.")
    thread = await client.beta.threads.create()
    await client.beta.threads.messages.create(thread.id, role="user", content="hi")
    model.script(text_reply("Hello there"))

    run = await client.beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id=assistant.id
    )

    assert run.status == "completed"
    messages = await client.beta.threads.messages.list(thread.id)
    assert [m.role for m in messages.data] == ["assistant", "user"]
    assert messages.data[0].content[0].text.value == "Hello there"  # type: ignore[union-attr]
    assert model.requests[0]["messages"][0] == {"role": "system", "content": "Be brief."}
