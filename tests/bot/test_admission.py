"""A burst of mentions is set up a few at a time (`ReplyOptions.concurrent_starts`): the rest
wait their turn, stored, and every one is answered."""

from __future__ import annotations

import asyncio

import pytest

from bot.conversations import ReplyOptions
from tests.bot.conftest import BotUnderTest
from tests.fakes.model_server import ModelFake, text_reply
from tests.fakes.slack_server import SlackFake

LOOKUP_SECONDS = 0.3


@pytest.fixture
def reply_options() -> ReplyOptions:
    return ReplyOptions(interval=0.05, stop_button_after=30, concurrent_starts=2)


async def test_a_burst_is_set_up_two_at_a_time_and_all_of_it_answered(
    slack: SlackFake, model: ModelFake, bot: BotUnderTest
) -> None:
    model.set_default(lambda _request: text_reply("Answered."))
    # The mention's file look-up happens while an answer is set up: slow it down to see how
    # many set-ups run at once.
    slack.slow_method("conversations.replies", LOOKUP_SECONDS)
    mentions = [slack.app_mention(f"C{i}", "U1", "<@UBOT> hello") for i in range(6)]

    deliveries = await asyncio.gather(*(slack.deliver(bot.url, m) for m in mentions))

    assert all(d.status == 200 for d in deliveries)  # acked while the set-ups wait
    await bot.bot.conversations.idle()
    for mention in mentions:
        event = mention["event"]
        assert slack.thread_text(event["channel"], event["ts"]) == "Answered."
    arrivals = sorted(c.time for c in slack.calls_of("conversations.replies"))
    assert len(arrivals) == 6
    # Two at a time: the look-ups come in three waves, each a look-up apart.
    assert arrivals[2] - arrivals[0] >= LOOKUP_SECONDS * 0.9
    assert arrivals[4] - arrivals[2] >= LOOKUP_SECONDS * 0.9
    assert arrivals[1] - arrivals[0] < LOOKUP_SECONDS * 0.5
