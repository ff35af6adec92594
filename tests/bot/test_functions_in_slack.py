"""Function calls resolved by internal handlers with the Slack context; reminders."""

from __future__ import annotations

import json

from tests.bot.conftest import BotUnderTest
from tests.fakes.model_server import ModelFake, ToolCall, text_reply, tool_calls_reply
from tests.fakes.slack_server import SlackFake


async def _mention(slack: SlackFake, bot: BotUnderTest, text: str) -> str:
    envelope = slack.app_mention("C1", "U1", f"<@UBOT> {text}")
    await slack.deliver(bot.url, envelope)
    await slack.next_call("chat.stopStream", timeout=10)
    return str(envelope["event"]["ts"])


def _tool_outputs(request: dict) -> dict[str, str]:
    return {m["tool_call_id"]: m["content"] for m in request["messages"] if m["role"] == "tool"}


async def test_handler_output_reaches_the_model_and_the_answer(
    slack: SlackFake, model: ModelFake, bot: BotUnderTest
) -> None:
    slack.add_user(
        "U2", name="ada", real_name="Ada Lovelace", tz="Europe/London", email="ada@example.com"
    )
    who = ToolCall("get_slack_user", json.dumps({"user_id": "U2"}))
    when = ToolCall("get_current_time", json.dumps({"timezone": "Asia/Tokyo"}))
    model.script(tool_calls_reply(who, when), text_reply("Ada is in London."))

    ts = await _mention(slack, bot, "who is <@U2>?")

    outputs = _tool_outputs(model.requests[1])
    user = json.loads(outputs[who.id])
    assert user["real_name"] == "Ada Lovelace" and user["time_zone"] == "Europe/London"
    assert "email" not in user and "phone" not in user
    assert json.loads(outputs[when.id])["timezone"] == "Asia/Tokyo"
    assert slack.calls_of("users.info")[0].args["user"] == "U2"
    assert slack.thread_text("C1", ts) == "Ada is in London."


async def test_raising_and_unknown_functions_become_error_outputs(
    slack: SlackFake, model: ModelFake, bot: BotUnderTest
) -> None:
    missing_user = ToolCall("get_slack_user", json.dumps({"user_id": "UNOPE"}))
    unknown = ToolCall("explode", "{}")
    bad_args = ToolCall("get_current_time", "not json")
    model.script(
        tool_calls_reply(missing_user, unknown, bad_args), text_reply("Some tools failed.")
    )

    ts = await _mention(slack, bot, "try everything")

    outputs = {k: json.loads(v) for k, v in _tool_outputs(model.requests[1]).items()}
    assert "user_not_found" in outputs[missing_user.id]["error"]
    assert "unknown function 'explode'" in outputs[unknown.id]["error"]
    assert "invalid arguments" in outputs[bad_args.id]["error"]
    assert slack.thread_text("C1", ts) == "Some tools failed."


async def test_reminder_fires_into_the_thread_when_due(
    slack: SlackFake, model: ModelFake, bot: BotUnderTest
) -> None:
    remind = ToolCall(
        "schedule_reminder", json.dumps({"text": "stand-up", "when": "in 10 minutes"})
    )
    model.script(tool_calls_reply(remind), text_reply("I'll remind you."))
    ts = await _mention(slack, bot, "remind me about stand-up in 10 minutes")
    scheduled = json.loads(_tool_outputs(model.requests[1])[remind.id])
    assert scheduled["scheduled"] is True

    assert await bot.bot.reminders.deliver_due() == 0  # not yet
    bot.clock.advance(601)
    assert await bot.bot.reminders.deliver_due() == 1
    assert await bot.bot.reminders.deliver_due() == 0  # exactly once
    posted = slack.calls_of("chat.postMessage")[-1].args
    assert posted["thread_ts"] == ts
    assert posted["text"] == ":alarm_clock: <@U1> Reminder: stand-up"
