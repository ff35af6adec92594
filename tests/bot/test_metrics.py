"""`/metrics` shows how many runs the process executes right now."""

from __future__ import annotations

import re

import aiohttp

from tests.bot.conftest import BotUnderTest
from tests.fakes.model_server import ModelFake, text_reply
from tests.fakes.slack_server import SlackFake


async def _runs_active(bot: BotUnderTest) -> float:
    url = bot.url.replace("/slack/events", "/metrics")
    async with aiohttp.ClientSession() as http, http.get(url) as response:
        body = await response.text()
    found = re.search(r"^slack_assistants_runs_active (\S+)$", body, re.MULTILINE)
    assert found is not None, "the gauge is missing"
    return float(found.group(1))


async def test_runs_active_counts_the_runs_streaming_now(
    slack: SlackFake, model: ModelFake, bot: BotUnderTest
) -> None:
    model.token_interval = 0.2  # two answers of about 2 s each
    model.set_default(lambda _request: text_reply("one two three four five six seven eight"))
    assert await _runs_active(bot) == 0
    for channel in ("C1", "C2"):
        await slack.deliver(bot.url, slack.app_mention(channel, "U1", "<@UBOT> hi"))
    # Both answers are streaming (each has started its message), with ~2 s still to go.
    await slack.wait_for(lambda: len(slack.calls_of("chat.startStream")) == 2, timeout=10)
    assert await _runs_active(bot) == 2
    await bot.bot.conversations.idle()
    assert await _runs_active(bot) == 0
