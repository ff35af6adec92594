"""Mentions, follow-ups and thread mapping, end to end through signed Slack requests."""

from __future__ import annotations

import asyncio

import pytest

from bot.conversations import ThreadKey
from tests.bot.conftest import BotUnderTest
from tests.fakes.model_server import ModelFake, text_reply
from tests.fakes.slack_server import SlackFake

ANSWER = "The answer is **4**.\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n```python\nprint(2 + 2)\n```"


async def test_mention_streams_the_answer_into_the_thread(
    slack: SlackFake, model: ModelFake, bot: BotUnderTest
) -> None:
    model.token_interval = 0.03
    model.script(text_reply(ANSWER, chunk_size=6))
    mention = slack.app_mention("C1", "U1", "<@UBOT> what is 2+2?")

    delivery = await slack.deliver(bot.url, mention)

    assert delivery.status == 200
    await slack.next_call("chat.stopStream", timeout=10)
    starts = slack.calls_of("chat.startStream")
    assert starts[0].args["thread_ts"] == mention["event"]["ts"]
    assert starts[0].args["recipient_user_id"] == "U1"
    assert len(slack.calls_of("chat.appendStream")) >= 1  # more than one visible write
    assert slack.thread_text("C1", mention["event"]["ts"]) == ANSWER
    request = model.requests[0]
    assert request["messages"][-1] == {"role": "user", "content": "what is 2+2?"}


async def test_follow_up_without_mention_continues_the_same_engine_thread(
    slack: SlackFake, model: ModelFake, bot: BotUnderTest
) -> None:
    model.script(text_reply("First answer."), text_reply("Second answer."), text_reply("New."))
    mention = slack.app_mention("C1", "U1", "<@UBOT> first question")
    await slack.deliver(bot.url, mention)
    await slack.next_call("chat.stopStream", timeout=10)

    follow_up = slack.message("C1", "U1", "and a follow-up", thread_ts=mention["event"]["ts"])
    await slack.deliver(bot.url, follow_up)
    await slack.next_call("chat.stopStream", timeout=10)

    contents = [m["content"] for m in model.requests[1]["messages"]]
    assert contents[-3:] == ["first question", "First answer.", "and a follow-up"]

    fresh = slack.app_mention("C1", "U1", "<@UBOT> unrelated")
    await slack.deliver(bot.url, fresh)
    await slack.next_call("chat.stopStream", timeout=10)
    contents = [m["content"] for m in model.requests[2]["messages"]]
    assert contents == ["You are a helpful assistant.", "unrelated"]


async def test_channel_chatter_and_unfollowed_threads_are_ignored(
    slack: SlackFake, model: ModelFake, bot: BotUnderTest
) -> None:
    await slack.deliver(bot.url, slack.message("C1", "U1", "hello all"))
    other = slack.message("C1", "U2", "reply elsewhere", thread_ts="1.000001")
    await slack.deliver(bot.url, other)
    await bot.bot.conversations.idle()
    assert model.requests == []
    assert slack.calls_of("chat.startStream") == []


async def test_a_mentions_file_look_up_runs_while_its_answer_is_set_up(
    slack: SlackFake, model: ModelFake, bot: BotUnderTest
) -> None:
    """`app_mention` omits the message's files, so the bot asks Slack for them; that round trip
    overlaps setting the answer up instead of coming before it."""
    lookup_seconds = 3.0
    slack.slow_method("conversations.replies", lookup_seconds)
    model.script(text_reply("Hello."))
    mention = slack.app_mention("C1", "U1", "<@UBOT> hi")
    key = ThreadKey(slack.team_id, "C1", mention["event"]["ts"])

    await slack.deliver(bot.url, mention)
    for _ in range(100):  # the link is a database row: nothing to wait on but the row
        if await bot.bot.conversations.follows(key):
            break
        await asyncio.sleep(0.025)
    else:
        pytest.fail("the answer's engine thread waited for the file look-up")

    assert slack.calls_of("conversations.replies") == []  # asked, not answered yet
    await slack.next_call("chat.stopStream", timeout=lookup_seconds + 5)
    assert len(slack.calls_of("conversations.replies")) == 1
    assert slack.thread_text("C1", mention["event"]["ts"]) == "Hello."
