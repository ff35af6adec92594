"""The Stop button offered when an answer takes long."""

from __future__ import annotations

import json

import pytest

from bot.conversations import ReplyOptions
from tests.bot.conftest import BotUnderTest
from tests.bot.test_surfaces import block_action
from tests.fakes.model_server import ModelFake, hang_reply
from tests.fakes.slack_server import SlackFake


@pytest.fixture
def reply_options() -> ReplyOptions:
    return ReplyOptions(interval=0.05, stop_button_after=0.0)


async def test_stop_button_cancels_a_long_answer(
    slack: SlackFake, model: ModelFake, bot: BotUnderTest
) -> None:
    model.script(hang_reply(30))
    mention = slack.app_mention("C1", "U1", "<@UBOT> think hard")
    await slack.deliver(bot.url, mention)
    offer = await slack.next_call("chat.postEphemeral", timeout=10)
    blocks = offer.args["blocks"]
    if isinstance(blocks, str):
        blocks = json.loads(blocks)
    button = blocks[0]["accessory"]

    await slack.action(
        bot.url, block_action(button["action_id"], button["value"], mention["event"]["ts"])
    )
    assert (await slack.next_call("response_url")).args["text"] == "Stopping that answer."
    await bot.bot.conversations.idle()
    assert slack.thread_text("C1", mention["event"]["ts"]) == "_(Stopped.)_"
