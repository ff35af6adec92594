"""When the model or Slack misbehaves, the user still gets a complete answer or a clear note."""

from __future__ import annotations

from tests.bot.conftest import BotUnderTest
from tests.fakes.model_server import ModelFake, error_reply, text_reply
from tests.fakes.slack_server import SlackFake

APOLOGY = ":warning: Sorry, something went wrong while answering. Please try again."
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


async def test_a_failed_stream_end_keeps_the_rest_of_the_answer_before_the_apology(
    slack: SlackFake, model: ModelFake, bot: BotUnderTest
) -> None:
    # chat.stopStream carries the answer's last words; Slack refusing it once must not lose
    # them: the apology ends the same message, after the whole answer.
    model.script(text_reply(LONG, chunk_size=5))
    slack.fail_method("chat.stopStream", "internal_error", times=1)
    ts = await _ask(slack, bot, "long please")
    await bot.bot.conversations.idle()
    assert len(slack.calls_of("chat.stopStream")) == 2
    replies = [m for m in slack.thread_messages("C1", ts) if m["ts"] != ts]
    assert len(replies) == 1, "the apology ends the streamed message, no second post"
    assert slack.thread_text("C1", ts) == f"{LONG}\n\n{APOLOGY}"


async def test_a_failed_first_write_still_delivers_the_answer_with_the_apology(
    slack: SlackFake, model: ModelFake, bot: BotUnderTest
) -> None:
    slack.fail_method("chat.startStream", "internal_error")
    model.script(text_reply("Here is what I found."))
    ts = await _ask(slack, bot, "hello?")
    await bot.bot.conversations.idle()
    assert slack.thread_text("C1", ts) == f"Here is what I found.\n\n{APOLOGY}"
