"""Agent DM surface, legacy assistant threads, feedback and stop buttons, long answers."""

from __future__ import annotations

import json

from tests.bot.conftest import BotUnderTest
from tests.fakes.model_server import ModelFake, text_reply
from tests.fakes.slack_server import SlackFake


async def test_opening_the_agent_dm_sets_suggested_prompts(
    slack: SlackFake, model: ModelFake, bot: BotUnderTest
) -> None:
    await slack.deliver(bot.url, slack.app_home_opened("U1", "D1", tab="messages"))
    call = await slack.next_call("assistant.threads.setSuggestedPrompts")
    assert call.args["channel_id"] == "D1"
    prompts = call.args["prompts"]
    if isinstance(prompts, str):
        prompts = json.loads(prompts)
    assert prompts[0]["title"] == "Solve an equation"

    await slack.deliver(bot.url, slack.app_home_opened("U1", "D1", tab="home"))
    assert len(slack.calls_of("assistant.threads.setSuggestedPrompts")) == 1


async def test_legacy_assistant_thread_greets_and_keeps_its_own_conversation(
    slack: SlackFake, model: ModelFake, bot: BotUnderTest
) -> None:
    started = slack.event_callback(
        {
            "type": "assistant_thread_started",
            "assistant_thread": {
                "user_id": "U1",
                "channel_id": "D1",
                "thread_ts": "1700000100.000100",
                "context": {"channel_id": "C9", "team_id": "T1", "enterprise_id": None},
            },
            "event_ts": "1700000100.000200",
        }
    )
    await slack.deliver(bot.url, started)
    greeting = await slack.next_call("chat.postMessage")
    assert greeting.args["thread_ts"] == "1700000100.000100"
    await slack.next_call("assistant.threads.setSuggestedPrompts")

    model.script(text_reply("Hello in the assistant thread."))
    question = slack.message(
        "D1", "U1", "a question", channel_type="im", thread_ts="1700000100.000100"
    )
    await slack.deliver(bot.url, question)
    await slack.next_call("chat.stopStream", timeout=10)
    assert [m["content"] for m in model.requests[0]["messages"]][1:] == ["a question"]


async def test_feedback_button_is_acknowledged(
    slack: SlackFake, model: ModelFake, bot: BotUnderTest
) -> None:
    model.script(text_reply("Rate me."))
    mention = slack.app_mention("C1", "U1", "<@UBOT> hi")
    await slack.deliver(bot.url, mention)
    stop = await slack.next_call("chat.stopStream", timeout=10)
    blocks = stop.args["blocks"]
    if isinstance(blocks, str):
        blocks = json.loads(blocks)
    feedback = blocks[-1]["elements"][0]
    assert feedback["type"] == "feedback_buttons"

    payload = block_action(feedback["action_id"], "good", mention["event"]["ts"])
    response = await slack.action(bot.url, payload)
    assert response.status == 200
    thanks = await slack.next_call("response_url")
    assert thanks.args["text"] == "Thanks for the feedback!"


async def test_long_answers_are_split_within_slack_limits(
    slack: SlackFake, model: ModelFake, bot: BotUnderTest
) -> None:
    paragraph = "Lorem ipsum dolor sit amet, consectetur adipiscing elit. " * 20
    answer = "\n\n".join(f"{i}. {paragraph.strip()}" for i in range(20))  # ~23k chars
    model.script(text_reply(answer, chunk_size=2000))
    mention = slack.app_mention("C1", "U1", "<@UBOT> essay")
    await slack.deliver(bot.url, mention)
    await bot.bot.conversations.idle()
    writes = [c for c in slack.calls if c.method in ("chat.startStream", "chat.appendStream")]
    assert all(len(c.args.get("markdown_text", "")) <= 12_000 for c in writes)
    assert len(slack.calls_of("chat.startStream")) >= 2
    assert slack.thread_text("C1", mention["event"]["ts"]).replace("\n", "") == answer.replace(
        "\n", ""
    )


def block_action(action_id: str, value: str, thread_ts: str) -> dict[str, object]:
    return {
        "type": "block_actions",
        "team": {"id": "T1", "domain": "test"},
        "user": {"id": "U1", "username": "u1", "team_id": "T1"},
        "api_app_id": "A1",
        "token": "verification-token",
        "trigger_id": "123.456",
        "container": {"type": "message", "channel_id": "C1", "is_ephemeral": False},
        "channel": {"id": "C1", "name": "general"},
        "message": {"ts": thread_ts, "text": ""},
        "actions": [
            {
                "type": "button",
                "action_id": action_id,
                "block_id": "b1",
                "value": value,
                "action_ts": "1700000000.1",
            }
        ],
    }


async def test_a_code_block_split_across_messages_is_closed_and_reopened(
    slack: SlackFake, model: ModelFake, bot: BotUnderTest
) -> None:
    code = "\n".join(f"print({i})  # line {i:05d}" for i in range(700))  # ~17k chars
    answer = f"Here it is:\n\n```python\n{code}\n```\n\nDone."
    model.script(text_reply(answer, chunk_size=3000))
    mention = slack.app_mention("C1", "U1", "<@UBOT> code")
    await slack.deliver(bot.url, mention)
    await bot.bot.conversations.idle()
    replies = [
        m["text"]
        for m in slack.thread_messages("C1", mention["event"]["ts"])
        if m.get("bot_id")
    ]
    assert len(replies) >= 2
    for text in replies:
        assert text.count("```") % 2 == 0, "every message's code fences are balanced"
    shown = "\n".join(replies)
    assert all(f"print({i})  # line {i:05d}" in shown for i in range(700))
    assert shown.endswith("Done.")
