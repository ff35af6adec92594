"""Exactly-once answers: queued messages in order, retries, bots, signatures."""

from __future__ import annotations

import asyncio
import time

from tests.bot.conftest import BotUnderTest
from tests.fakes.model_server import ModelFake, echo_reply, text_reply
from tests.fakes.slack_server import SlackFake


async def test_messages_during_a_run_are_all_answered_in_order(
    slack: SlackFake, model: ModelFake, bot: BotUnderTest
) -> None:
    model.token_interval = 0.05
    model.set_default(lambda _request: echo_reply())
    mention = slack.app_mention("C1", "U1", "<@UBOT> one")
    thread = mention["event"]["ts"]
    await slack.deliver(bot.url, mention)
    await model.next_request()  # the first run is now streaming
    for text in ("two", "three", "four"):
        await slack.deliver(bot.url, slack.message("C1", "U1", text, thread_ts=thread))

    await slack.wait_for(lambda: len(slack.calls_of("chat.stopStream")) == 4, timeout=15)
    await bot.bot.conversations.idle()
    assert [r["messages"][-1]["content"] for r in model.requests] == ["one", "two", "three", "four"]
    assert slack.thread_text("C1", thread).splitlines() == [
        "echo: one",
        "echo: two",
        "echo: three",
        "echo: four",
    ]
    # Nobody saw the engine's thread lock.
    assert "active" not in slack.thread_text("C1", thread)


async def test_retried_event_is_answered_once(
    slack: SlackFake, model: ModelFake, bot: BotUnderTest
) -> None:
    model.script(text_reply("Only once."))
    mention = slack.app_mention("C1", "U1", "<@UBOT> hello")
    first = await slack.deliver(bot.url, mention)
    retries = await asyncio.gather(
        slack.deliver(bot.url, mention, retry_num=1, retry_reason="http_timeout"),
        slack.deliver(bot.url, mention, retry_num=2, retry_reason="http_timeout"),
    )
    assert [d.status for d in (first, *retries)] == [200, 200, 200]
    await slack.next_call("chat.stopStream", timeout=10)
    await bot.bot.conversations.idle()
    assert len(model.requests) == 1
    assert len(slack.calls_of("chat.startStream")) == 1


async def test_mention_inside_a_followed_thread_is_answered_once(
    slack: SlackFake, model: ModelFake, bot: BotUnderTest
) -> None:
    model.set_default(lambda _request: echo_reply())
    mention = slack.app_mention("C1", "U1", "<@UBOT> start")
    thread = mention["event"]["ts"]
    await slack.deliver(bot.url, mention)
    await slack.next_call("chat.stopStream", timeout=10)

    ts = "1800000000.000100"
    text = "<@UBOT> again"
    await slack.deliver(bot.url, slack.app_mention("C1", "U1", text, ts=ts, thread_ts=thread))
    await slack.deliver(bot.url, slack.message("C1", "U1", text, ts=ts, thread_ts=thread))
    await slack.next_call("chat.stopStream", timeout=10)
    await bot.bot.conversations.idle()
    assert len(model.requests) == 2


async def test_messages_from_bots_are_ignored(
    slack: SlackFake, model: ModelFake, bot: BotUnderTest
) -> None:
    own = slack.message("D1", "UBOT", "my own reply", channel_type="im", bot_id="BBOT")
    other = slack.message("D1", "U9", "beep", channel_type="im", bot_id="B999")
    subtype = slack.message("D1", "U9", "beep", channel_type="im", subtype="bot_message")
    for envelope in (own, other, subtype):
        assert (await slack.deliver(bot.url, envelope)).status == 200
    await bot.bot.conversations.idle()
    assert model.requests == []


async def test_forged_and_stale_signatures_are_rejected(
    slack: SlackFake, model: ModelFake, bot: BotUnderTest
) -> None:
    forged = await slack.deliver(
        bot.url, slack.app_mention("C1", "U1", "<@UBOT> hi"), signature="v0=" + "0" * 64
    )
    stale = await slack.deliver(
        bot.url, slack.app_mention("C1", "U1", "<@UBOT> hi"), timestamp=int(time.time()) - 600
    )
    assert forged.status == 401 and stale.status == 401
    await bot.bot.conversations.idle()
    assert model.requests == []
    assert slack.calls_of("chat.startStream") == []
