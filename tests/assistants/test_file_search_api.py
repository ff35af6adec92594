"""file_search through the official SDK: vector stores, uploads, runs with citations."""

from __future__ import annotations

import io
import json
import re
from typing import Any

import openai

from tests.fakes.model_server import ModelFake, Reply, ToolCall, text_reply, tool_calls_reply

HANDBOOK = (
    "# Travel policy\n\nEmployees book economy class for flights under six hours. "
    "Business class needs approval from a director.\n\n"
    "# Expenses\n\nMeals abroad are reimbursed up to 60 EUR per day with receipts.\n"
)
ONBOARDING = "New joiners receive a laptop on day one and meet their buddy in week one.\n"
MARKER = re.compile(r"【\d+:\d+†[^】]+】")


def _cite_first_hit(request: dict[str, Any]) -> Reply:
    """The scripted model answers from the search output, copying the first marker."""
    tool = next(m for m in reversed(request["messages"]) if m["role"] == "tool")
    marker = MARKER.search(tool["content"])
    assert marker, tool["content"]
    return text_reply(f"Flights under six hours are economy class{marker.group(0)}.")


async def test_upload_index_and_answer_with_citations(
    client: openai.AsyncOpenAI, model: ModelFake
) -> None:
    store = await client.vector_stores.create(name="Handbook")
    handbook = await client.vector_stores.files.upload_and_poll(
        vector_store_id=store.id, file=("handbook.md", io.BytesIO(HANDBOOK.encode()))
    )
    assert handbook.status == "completed", handbook.last_error
    batch = await client.vector_stores.file_batches.upload_and_poll(
        store.id,
        files=[
            ("onboarding.txt", io.BytesIO(ONBOARDING.encode())),
            ("notes.md", io.BytesIO(b"Office plants are watered on Fridays.")),
        ],
    )
    assert batch.status == "completed" and batch.file_counts.completed == 2
    store = await client.vector_stores.retrieve(store.id)
    assert store.file_counts.completed == 3 and store.status == "completed"

    assistant = await client.beta.assistants.create(
        model="fake-model",
        tools=[{"type": "file_search"}],
        tool_resources={"file_search": {"vector_store_ids": [store.id]}},
    )
    query = ToolCall("file_search", json.dumps({"query": "which class for short flights"}))
    model.script(tool_calls_reply(query))
    model.set_default(_cite_first_hit)
    thread = await client.beta.threads.create(
        messages=[{"role": "user", "content": "Can I fly business to Paris?"}]
    )
    run = await client.beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id=assistant.id
    )
    assert run.status == "completed", run.last_error

    message = (await client.beta.threads.messages.list(thread.id)).data[0]
    text = message.content[0].text  # type: ignore[union-attr]
    [annotation] = text.annotations
    assert annotation.type == "file_citation"
    assert text.value[annotation.start_index : annotation.end_index] == annotation.text
    assert annotation.file_citation.file_id == handbook.id  # type: ignore[union-attr]

    # The annotation-rewriting snippet from OpenAI's docs, as users wrote it.
    message_content = text
    annotations = message_content.annotations
    citations = []
    for index, annotation in enumerate(annotations):
        message_content.value = message_content.value.replace(annotation.text, f"[{index}]")
        if file_citation := getattr(annotation, "file_citation", None):
            cited_file = await client.files.retrieve(file_citation.file_id)
            citations.append(f"[{index}] {cited_file.filename}")
    assert message_content.value == "Flights under six hours are economy class[0]."
    assert citations == ["[0] handbook.md"]

    steps = await client.beta.threads.runs.steps.list(
        run_id=run.id,
        thread_id=thread.id,
        order="asc",
        include=["step_details.tool_calls[*].file_search.results[*].content"],
    )
    search = steps.data[0].step_details.tool_calls[0]  # type: ignore[union-attr]
    assert search.type == "file_search"
    top = search.file_search.results[0]  # type: ignore[union-attr]
    assert top.file_name == "handbook.md" and "economy class" in top.content[0].text  # type: ignore[index]
    plain = await client.beta.threads.runs.steps.list(
        run_id=run.id, thread_id=thread.id, order="asc"
    )
    assert plain.data[0].step_details.tool_calls[0].file_search.results[0].content is None  # type: ignore[union-attr]


async def test_search_endpoint_and_store_isolation(client: openai.AsyncOpenAI) -> None:
    one = await client.vector_stores.create(name="one")
    two = await client.vector_stores.create(name="two")
    await client.vector_stores.files.upload_and_poll(
        vector_store_id=one.id, file=("handbook.md", io.BytesIO(HANDBOOK.encode()))
    )
    await client.vector_stores.files.upload_and_poll(
        vector_store_id=two.id, file=("onboarding.txt", io.BytesIO(ONBOARDING.encode()))
    )
    found = await client.vector_stores.search(one.id, query="meals abroad reimbursed")
    assert found.data and {hit.filename for hit in found.data} == {"handbook.md"}
    assert 0 <= found.data[0].score <= 1
    other = await client.vector_stores.search(two.id, query="meals abroad reimbursed")
    assert all(hit.filename == "onboarding.txt" for hit in other.data)
