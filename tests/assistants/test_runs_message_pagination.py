"""Message list pagination through the SDK: `limit`, `order`, `after`, `before`, `run_id`, and the
list envelope (`object`, `first_id`, `last_id`, `has_more`) as the spec documents them."""

from __future__ import annotations

from typing import Any

import openai
import pytest

from tests.fakes.model_server import ModelFake, text_reply


async def _thread_with(client: openai.AsyncOpenAI, count: int) -> tuple[str, list[str]]:
    """A thread with `count` messages; returns their ids in creation order."""
    thread = await client.beta.threads.create()
    ids = []
    for number in range(count):
        message = await client.beta.threads.messages.create(
            thread.id, role="user", content=f"message {number}"
        )
        ids.append(message.id)
    return thread.id, ids


async def _raw_page(client: openai.AsyncOpenAI, thread_id: str, **query: Any) -> dict[str, Any]:
    """The list envelope exactly as sent (the SDK's page model keeps only data/has_more)."""
    response = await client.beta.threads.messages.with_raw_response.list(thread_id, **query)
    body: dict[str, Any] = response.http_response.json()
    return body


async def test_default_order_is_newest_first_with_envelope(client: openai.AsyncOpenAI) -> None:
    thread_id, ids = await _thread_with(client, 3)

    body = await _raw_page(client, thread_id)

    assert body["object"] == "list"
    assert [m["id"] for m in body["data"]] == ids[::-1]
    assert body["first_id"] == ids[-1] and body["last_id"] == ids[0]
    assert body["has_more"] is False
    empty_thread = await client.beta.threads.create()
    empty = await _raw_page(client, empty_thread.id)
    assert empty == {
        "object": "list",
        "data": [],
        "first_id": None,
        "last_id": None,
        "has_more": False,
    }


async def test_limit_and_after_walk_every_page(client: openai.AsyncOpenAI) -> None:
    thread_id, ids = await _thread_with(client, 5)
    newest_first = ids[::-1]

    first = await _raw_page(client, thread_id, limit=2)
    assert [m["id"] for m in first["data"]] == newest_first[:2]
    assert (first["first_id"], first["last_id"], first["has_more"]) == (
        newest_first[0],
        newest_first[1],
        True,
    )
    second = await _raw_page(client, thread_id, limit=2, after=first["last_id"])
    assert [m["id"] for m in second["data"]] == newest_first[2:4]
    assert second["has_more"] is True
    third = await _raw_page(client, thread_id, limit=2, after=second["last_id"])
    assert [m["id"] for m in third["data"]] == newest_first[4:]
    assert third["has_more"] is False

    # Exactly `limit` left: has_more is false (no phantom next page).
    exact = await _raw_page(client, thread_id, limit=3, after=newest_first[1])
    assert [m["id"] for m in exact["data"]] == newest_first[2:]
    assert exact["has_more"] is False

    # The SDK's auto-pagination follows `after=<last id>` until has_more is false.
    collected = [m.id async for m in client.beta.threads.messages.list(thread_id, limit=2)]
    assert collected == newest_first


async def test_ascending_order_and_before(client: openai.AsyncOpenAI) -> None:
    thread_id, ids = await _thread_with(client, 5)

    ascending = await _raw_page(client, thread_id, order="asc", limit=3)
    assert [m["id"] for m in ascending["data"]] == ids[:3]
    assert ascending["has_more"] is True
    rest = await _raw_page(client, thread_id, order="asc", after=ascending["last_id"])
    assert [m["id"] for m in rest["data"]] == ids[3:]
    assert rest["has_more"] is False

    # `before` returns the objects just before the cursor in list order, nearest ones first
    # when limited, still in the requested order.
    desc_before = await _raw_page(client, thread_id, before=ids[1])  # newer than ids[1]
    assert [m["id"] for m in desc_before["data"]] == [ids[4], ids[3], ids[2]]
    assert desc_before["has_more"] is False
    desc_before_limited = await _raw_page(client, thread_id, before=ids[1], limit=2)
    assert [m["id"] for m in desc_before_limited["data"]] == [ids[3], ids[2]]
    assert desc_before_limited["has_more"] is True
    asc_before = await _raw_page(client, thread_id, order="asc", before=ids[3], limit=2)
    assert [m["id"] for m in asc_before["data"]] == [ids[1], ids[2]]
    assert asc_before["has_more"] is True

    # A window between two cursors.
    window = await _raw_page(client, thread_id, order="asc", after=ids[0], before=ids[4])
    assert [m["id"] for m in window["data"]] == ids[1:4]


async def test_run_id_filter(client: openai.AsyncOpenAI, model: ModelFake) -> None:
    assistant = await client.beta.assistants.create(model="fake-model")
    thread_id, _ids = await _thread_with(client, 2)
    model.script(text_reply("first answer"), text_reply("second answer"))
    first = await client.beta.threads.runs.create_and_poll(
        thread_id=thread_id, assistant_id=assistant.id
    )
    await client.beta.threads.messages.create(thread_id, role="user", content="again")
    second = await client.beta.threads.runs.create_and_poll(
        thread_id=thread_id, assistant_id=assistant.id
    )

    by_first = await client.beta.threads.messages.list(thread_id, run_id=first.id)
    by_second = await client.beta.threads.messages.list(thread_id, run_id=second.id)

    assert [m.content[0].text.value for m in by_first.data] == ["first answer"]  # type: ignore[union-attr]
    assert [m.content[0].text.value for m in by_second.data] == ["second answer"]  # type: ignore[union-attr]
    everything = await client.beta.threads.messages.list(thread_id)
    assert len(everything.data) == 5


@pytest.mark.parametrize("limit", [0, 101])
async def test_limit_out_of_range_is_400(client: openai.AsyncOpenAI, limit: int) -> None:
    thread_id, _ids = await _thread_with(client, 1)
    with pytest.raises(openai.BadRequestError) as caught:
        await client.beta.threads.messages.list(thread_id, limit=limit)
    assert caught.value.body["param"] == "limit"  # type: ignore[index]


async def test_unknown_cursor_is_400(client: openai.AsyncOpenAI) -> None:
    thread_id, _ids = await _thread_with(client, 1)
    _other, other_ids = await _thread_with(client, 1)
    with pytest.raises(openai.BadRequestError) as caught:
        # A real message id, but of another thread: not a cursor of this list.
        await client.beta.threads.messages.list(thread_id, after=other_ids[0])
    assert caught.value.body["param"] == "after"  # type: ignore[index]
