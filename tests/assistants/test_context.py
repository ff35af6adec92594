"""The prompt of a run: truncation newest-first within the budget, `last_messages`, content
shapes, and the run's own turns — on the database the tests run against."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text

from assistants.context import _one_text, build_prompt, estimate_tokens
from assistants.messages import message_content
from storage import Database, MessageRow, RunRow, RunStepRow

_PER_MESSAGE = 4


def _text(value: str, annotations: list[Any] | None = None) -> dict[str, Any]:
    return {"type": "text", "text": {"value": value, "annotations": annotations or []}}


def _run(**fields: Any) -> RunRow:
    values: dict[str, Any] = {
        "id": "run_1",
        "thread_id": "thread_1",
        "assistant_id": "asst_1",
        "created_at": 0,
        "status": "in_progress",
        "model": "fake-model",
        "instructions": "Be brief.",
    }
    return RunRow(**(values | fields))


async def _thread(
    db: Database, contents: list[list[dict[str, Any]]], *, run_ids: dict[int, str] | None = None
) -> None:
    """Messages oldest first, alternating user and assistant, on `thread_1`; another thread's
    messages interleaved, which must never show."""
    await db.upgrade()
    async with db.session() as session:
        for i, content in enumerate(contents):
            for thread_id in ("thread_1", "thread_other"):
                session.add(
                    MessageRow(
                        id=f"msg_{thread_id}_{i}",
                        thread_id=thread_id,
                        created_at=i,
                        role="user" if i % 2 == 0 else "assistant",
                        content=content,
                        run_id=(run_ids or {}).get(i),
                    )
                )


def _newest_within(
    messages: list[dict[str, Any]], budget: int
) -> tuple[list[dict[str, Any]], int, int]:
    """The rule, spelled out: newest first, the first kept whatever it costs, stop at the
    first that does not fit."""
    kept: list[dict[str, Any]] = []
    tokens = 0
    for message in reversed(messages):
        cost = estimate_tokens(message["content"]) + _PER_MESSAGE
        if kept and tokens + cost > budget:
            return kept[::-1], tokens, 1
        kept.append(message)
        tokens += cost
    return kept[::-1], tokens, 0


def _system_cost(run: RunRow) -> int:
    return estimate_tokens(run.instructions) + _PER_MESSAGE


async def test_the_budget_keeps_the_newest_messages_in_order(database: Database) -> None:
    # Short old messages under long new ones: the first read's average cost is far above the
    # rest's, so the reads after it come short and the thread is read in several batches.
    values = [
        f"{i} " + ("short " if i < 700 else "a much longer message " * 12) for i in range(1000)
    ]
    await _thread(database, [[_text(v)] for v in values])
    run = _run()
    budget = 25_000
    everything = [
        {"role": "user" if i % 2 == 0 else "assistant", "content": v} for i, v in enumerate(values)
    ]
    expected, tokens, dropped = _newest_within(everything, budget - _system_cost(run))
    assert 300 < len(expected) < 1000  # the budget cuts in the middle, past the first read

    async with database.session() as session:
        prompt = await build_prompt(session, run, budget=budget)

    assert prompt.messages == [{"role": "system", "content": "Be brief."}, *expected]
    assert prompt.messages[-1]["content"] == values[-1]
    assert (prompt.tokens, prompt.dropped) == (_system_cost(run) + tokens, dropped)
    assert dropped == 1


async def test_a_thread_within_the_budget_is_sent_whole(database: Database) -> None:
    values = [f"message {i}" for i in range(300)]
    await _thread(database, [[_text(v)] for v in values])

    async with database.session() as session:
        prompt = await build_prompt(session, _run(instructions=""), budget=100_000)

    assert [m["content"] for m in prompt.messages] == values
    assert prompt.dropped == 0
    assert prompt.tokens == sum(estimate_tokens(v) + _PER_MESSAGE for v in values)


async def test_the_newest_message_is_kept_even_over_the_budget(database: Database) -> None:
    await _thread(database, [[_text("old")], [_text("new " * 100)]])

    async with database.session() as session:
        prompt = await build_prompt(session, _run(instructions=""), budget=10)

    assert prompt.messages == [{"role": "assistant", "content": "new " * 100}]
    assert prompt.dropped == 1


async def test_last_messages_is_exact_and_the_budget_still_applies(database: Database) -> None:
    values = [f"m{i} " * 20 for i in range(10)]
    await _thread(database, [[_text(v)] for v in values])
    strategy = {"type": "last_messages", "last_messages": 3}

    async with database.session() as session:
        roomy = await build_prompt(session, _run(truncation_strategy=strategy), budget=100_000)
        tight = await build_prompt(session, _run(truncation_strategy=strategy), budget=40)

    assert [m["content"] for m in roomy.messages[1:]] == values[-3:]
    assert roomy.dropped == 0
    assert [m["content"] for m in tight.messages[1:]] == values[-1:]
    assert tight.dropped == 1


async def test_every_content_shape_becomes_its_chat_message(database: Database) -> None:
    tricky = 'quotes " and \\ backslashes, \u00e9\u2603\U0001f600, tabs\tand\nnew lines'
    citation = {
        "type": "file_citation",
        "text": "【4:0†a.txt】",
        "start_index": 0,
        "end_index": 10,
        "file_citation": {"file_id": "file-1"},
    }
    image_url = {"type": "image_url", "image_url": {"url": "https://x.test/a.png"}}
    contents: list[list[dict[str, Any]]] = [
        message_content(tricky),  # user
        [_text("cited", [citation])],  # assistant
        [_text("one"), _text("two")],  # user
        [{"type": "image_file", "image_file": {"file_id": "file-2"}}, _text("see")],  # assistant
        [image_url, _text("look")],  # user: the image goes along
        [image_url, _text("mine")],  # assistant: only user images are sent
        [_text("")],  # user
    ]
    await _thread(database, contents)

    async with database.session() as session:
        prompt = await build_prompt(session, _run(instructions=""), budget=100_000)

    assert prompt.messages == [
        {"role": "user", "content": tricky},
        {"role": "assistant", "content": "cited"},
        {"role": "user", "content": "one\n\ntwo"},
        {"role": "assistant", "content": "[image file file-2]\n\nsee"},
        {
            "role": "user",
            "content": [
                {"type": "image_url", "image_url": {"url": "https://x.test/a.png"}},
                {"type": "text", "text": "look"},
            ],
        },
        {"role": "assistant", "content": "mine"},
        {"role": "user", "content": ""},
    ]


async def test_the_runs_own_turns_come_last_from_its_steps(database: Database) -> None:
    # Message 2 is another run's answer (history); message 3 is this run's (a turn of its own).
    contents = [[_text("question")], [_text("earlier answer")], [_text("follow-up")]]
    await _thread(
        database, [*contents, [_text("this run's text")]], run_ids={1: "run_0", 3: "run_1"}
    )
    call = {
        "id": "call_1",
        "type": "function",
        "function": {"name": "lookup", "arguments": "{}", "output": "found"},
    }
    steps = [
        ("message_creation", {"message_creation": {"message_id": "msg_thread_1_3"}}),
        ("tool_calls", {"tool_calls": [call]}),
    ]
    async with database.session() as session:
        for i, (kind, details) in enumerate(steps):
            session.add(
                RunStepRow(
                    id=f"step_{i}",
                    run_id="run_1",
                    thread_id="thread_1",
                    assistant_id="asst_1",
                    created_at=i,
                    type=kind,
                    status="completed",
                    step_details=details,
                )
            )

    async with database.session() as session:
        prompt = await build_prompt(session, _run(), budget=100_000)

    assert prompt.messages == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "question"},
        {"role": "assistant", "content": "earlier answer"},
        {"role": "user", "content": "follow-up"},
        {"role": "assistant", "content": "this run's text"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "lookup", "arguments": "{}"},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "found"},
    ]
    assert prompt.dropped == 0


async def test_stored_text_messages_are_read_without_decoding_the_content(
    database: Database,
) -> None:
    """Text messages as the engine stores them take the fast path, on either database: if
    the stored form changes, prompts stay right but cost three times more to build."""
    value = 'say "hi" \\ \u00e9\U0001f600\n'
    await _thread(database, [message_content(value)])
    async with database.engine.connect() as conn:
        stored = (
            await conn.execute(
                text("SELECT CAST(content AS TEXT) FROM message WHERE id = :id"),
                {"id": "msg_thread_1_0"},
            )
        ).scalar_one()
    assert _one_text(stored) == value
