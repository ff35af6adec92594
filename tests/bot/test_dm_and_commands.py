"""DMs and the /assistant command."""

from __future__ import annotations

from tests.bot.conftest import BotUnderTest
from tests.fakes.model_server import ModelFake, text_reply
from tests.fakes.slack_server import SlackFake


async def _dm(slack: SlackFake, bot: BotUnderTest, text: str) -> str:
    envelope = slack.message("D1", "U1", text, channel_type="im")
    await slack.deliver(bot.url, envelope)
    await slack.next_call("chat.stopStream", timeout=10)
    return str(envelope["event"]["ts"])


async def test_dm_is_answered_by_the_math_tutor_and_use_switches(
    slack: SlackFake, model: ModelFake, bot: BotUnderTest
) -> None:
    model.script(text_reply("x = 1"), text_reply("Hi from Helper"))
    ts = await _dm(slack, bot, "solve 3x + 11 = 14")
    assert model.requests[0]["messages"][0]["content"] == "You are a personal math tutor."
    assert slack.thread_text("D1", ts) == "x = 1"
    assert "recipient_user_id" not in slack.calls_of("chat.startStream")[0].args

    listing = (await slack.command(bot.url, text="list", channel_id="D1")).json()
    assert "*Math Tutor* ✓ *(answering here)*" in listing["text"]
    used = (await slack.command(bot.url, text="use helper", channel_id="D1")).json()
    assert used["response_type"] == "ephemeral" and "*Helper*" in used["text"]
    listing = (await slack.command(bot.url, text="list", channel_id="D1")).json()
    assert "*Helper* ✓ *(answering here)*" in listing["text"]

    await _dm(slack, bot, "and now?")
    second = model.requests[1]["messages"]
    assert second[0]["content"] == "You are a helpful assistant."
    # The DM conversation continues: the earlier exchange is still in the prompt.
    assert [m["content"] for m in second[1:]] == ["solve 3x + 11 = 14", "x = 1", "and now?"]


async def test_new_starts_a_fresh_dm_conversation(
    slack: SlackFake, model: ModelFake, bot: BotUnderTest
) -> None:
    model.script(text_reply("one"), text_reply("two"))
    await _dm(slack, bot, "first")
    reply = (await slack.command(bot.url, text="new", channel_id="D1")).json()
    assert "fresh conversation" in reply["text"]
    await _dm(slack, bot, "second")
    assert [m["content"] for m in model.requests[1]["messages"][1:]] == ["second"]


async def test_status_and_help_and_unknown_subcommands(
    slack: SlackFake, model: ModelFake, bot: BotUnderTest
) -> None:
    status = (await slack.command(bot.url, text="status", channel_id="C1")).json()
    assert status["text"].startswith("*Helper* answers here.")
    for text in ("", "help", "frobnicate", "use Nobody"):
        reply = (await slack.command(bot.url, text=text, channel_id="C1")).json()
        assert reply["response_type"] == "ephemeral"
        assert "/assistant use NAME" in reply["text"], text
    unknown = (await slack.command(bot.url, text="use Nobody", channel_id="C1")).json()
    assert "There is no assistant called `Nobody`" in unknown["text"]
    assert model.requests == []
