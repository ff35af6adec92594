"""When the model or Slack misbehaves, the user still gets a complete answer or a clear note."""

from __future__ import annotations

from tests.bot.conftest import BotUnderTest
from tests.fakes.model_server import ModelFake, error_reply, text_reply
from tests.fakes.slack_server import SlackFake

LONG = "A long answer that streams in many small pieces, one after another, until done."


async def _ask(slack: SlackFake, bot: BotUnderTest, text: str) -> str:
    envelope = slack.app_mention("C1", "U1", f"<@UBOT> {text}")
    await slack.deliver(bot.url, envelope)
    return str(envelope["event"]["ts"])


async def test_failing_model_gives_a_friendly_error_and_the_next_mention_works(
    slack: SlackFake, model: ModelFake, bot: BotUnderTest
) -> None:
    model.script(error_reply(500, "upstream exploded"), text_reply("Back again."))
    ts = await _ask(slack, bot, "hello?")
    await bot.bot.conversations.idle()
    failed = slack.thread_text("C1", ts)
    assert failed.startswith(":warning: Sorry, I couldn't finish that answer")
    assert "upstream exploded" not in failed  # provider internals stay in the logs

    ts = await _ask(slack, bot, "again?")
    await bot.bot.conversations.idle()
    assert slack.thread_text("C1", ts) == "Back again."


async def test_rate_limited_writes_still_deliver_the_whole_answer(
    slack: SlackFake, model: ModelFake, bot: BotUnderTest
) -> None:
    model.token_interval = 0.02
    model.script(text_reply(LONG, chunk_size=5))
    slack.force_429("chat.appendStream", times=2, retry_after=1)
    slack.force_429("chat.stopStream", times=1, retry_after=1)
    ts = await _ask(slack, bot, "long please")
    await bot.bot.conversations.idle()
    assert slack.rate_limited.count("chat.appendStream") == 2
    assert slack.thread_text("C1", ts) == LONG


async def test_expired_stream_falls_back_to_chat_update(
    slack: SlackFake, model: ModelFake, bot: BotUnderTest
) -> None:
    model.token_interval = 0.03
    model.script(text_reply(LONG, chunk_size=5))
    slack.expire_stream_after(1)
    ts = await _ask(slack, bot, "long please")
    await bot.bot.conversations.idle()
    assert slack.calls_of("chat.update"), "the answer was finished with chat.update"
    assert slack.thread_text("C1", ts) == LONG


async def test_without_streaming_the_answer_is_posted_and_updated(
    slack: SlackFake, model: ModelFake, bot: BotUnderTest
) -> None:
    slack.streaming_enabled = False
    model.token_interval = 0.03
    model.script(text_reply(LONG, chunk_size=5))
    ts = await _ask(slack, bot, "long please")
    await bot.bot.conversations.idle()
    assert len(slack.calls_of("chat.postMessage")) == 1
    assert slack.calls_of("chat.update")
    assert slack.thread_text("C1", ts) == LONG


async def test_status_failure_never_blocks_the_reply(
    slack: SlackFake, model: ModelFake, bot: BotUnderTest
) -> None:
    slack.fail_method("assistant.threads.setStatus", error="missing_scope")
    model.script(text_reply("Still here."))
    ts = await _ask(slack, bot, "status?")
    await bot.bot.conversations.idle()
    assert slack.calls_of("assistant.threads.setStatus")
    assert slack.thread_text("C1", ts) == "Still here."
