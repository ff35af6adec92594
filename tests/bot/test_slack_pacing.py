"""Slack's rate limits kept on our side: the pacer's windows, the reply that degrades to one
post when streams have no budget, and the bot under a burst against the emulator's limits."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from typing import Any

import pytest
from slack_sdk.web.async_client import AsyncWebClient

from bot.conversations import ReplyOptions
from bot.settings import Settings
from bot.slack_pacing import SLACK_LIMITS, PacedWebClient, RateLimit, SlackPacer
from bot.slack_reply import SlackReply
from tests.bot.conftest import BotUnderTest
from tests.fakes import slack_server
from tests.fakes.model_server import ModelFake, Reply, text_reply
from tests.fakes.slack_server import SlackFake

# -- the sliding window --------------------------------------------------------------------


async def _timed(call: Awaitable[Any]) -> float:
    started = time.monotonic()
    await call
    return time.monotonic() - started


async def test_window_admits_limit_calls_then_waits_for_the_oldest_to_leave() -> None:
    pacer = SlackPacer({"chat.startStream": RateLimit(2, window=0.3)})
    started = time.monotonic()
    await pacer.take("chat.startStream")
    await pacer.take("chat.startStream")
    assert time.monotonic() - started < 0.1  # the first `limit` calls go at once
    assert not pacer.ready("chat.startStream")

    assert 0.25 <= await _timed(pacer.take("chat.startStream")) < 0.6
    assert pacer.ready("chat.startStream")  # both first calls left: room for one more
    assert await _timed(pacer.take("chat.startStream")) < 0.05
    assert not pacer.ready("chat.startStream")
    await asyncio.sleep(0.35)
    assert pacer.ready("chat.startStream")  # `ready` records nothing...
    assert pacer.ready("chat.startStream")
    assert await _timed(pacer.take("chat.startStream")) < 0.05


async def test_waiters_go_in_arrival_order_one_window_apart() -> None:
    pacer = SlackPacer({"chat.update": RateLimit(1, window=0.2)})
    order: list[int] = []

    async def call(n: int) -> None:
        await pacer.take("chat.update")
        order.append(n)

    elapsed = await _timed(asyncio.gather(*(call(n) for n in range(4))))
    assert order == [0, 1, 2, 3]
    assert 0.55 <= elapsed < 1.0  # three waits of 0.2 s


async def test_a_call_in_flight_counts_until_a_window_after_its_answer() -> None:
    pacer = SlackPacer({"chat.stopStream": RateLimit(1, window=0.3)})
    async with pacer.sending("chat.stopStream"):
        assert not pacer.ready("chat.stopStream")
        await asyncio.sleep(0.2)  # Slack counted it somewhere in here
    assert 0.25 <= await _timed(pacer.take("chat.stopStream")) < 0.6


async def test_channels_have_their_own_windows_where_the_limit_says_so() -> None:
    pacer = SlackPacer(
        {
            "chat.postMessage": RateLimit(1, window=5.0, per_channel=True),
            "chat.update": RateLimit(1, window=5.0),
        }
    )
    await pacer.take("chat.postMessage", "C1")
    assert not pacer.ready("chat.postMessage", "C1")
    assert pacer.ready("chat.postMessage", "C2")
    await pacer.take("chat.update", "C1")
    assert not pacer.ready("chat.update", "C2")  # one window for the whole workspace
    assert pacer.ready("users.lookupByEmail")  # no known limit: free
    assert await _timed(pacer.take("users.lookupByEmail")) < 0.05


def test_published_tiers_match_the_emulators_defaults() -> None:
    for method, limit in SLACK_LIMITS.items():
        emulated = slack_server.DEFAULT_RATE_LIMITS[method]
        assert (limit.limit, limit.window, limit.per_channel) == (
            emulated.limit,
            emulated.window,
            emulated.per_channel,
        ), method


async def test_token_checks_at_the_same_time_share_one_call(slack: SlackFake) -> None:
    client = PacedWebClient(pacer=SlackPacer(), token=slack.bot_token, base_url=slack.url)
    try:
        answers = await asyncio.gather(*(client.auth_test() for _ in range(20)))
        assert {a["user_id"] for a in answers} == {slack.bot_user_id}
        assert len(slack.calls_of("auth.test")) == 1  # Bolt asks once per event of a burst
        await client.auth_test()
        assert len(slack.calls_of("auth.test")) == 2  # not remembered: only shared
    finally:
        if client.session is not None:
            await client.session.close()


# -- one reply without stream budget -------------------------------------------------------


async def _no_stream_budget() -> SlackPacer:
    pacer = SlackPacer({"chat.startStream": RateLimit(1, window=60.0)})
    await pacer.take("chat.startStream")  # another answer took the last one
    return pacer


async def _reply_without_stream_budget(client: AsyncWebClient) -> SlackReply:
    return SlackReply(
        client,
        channel="C1",
        thread_ts="1.000001",
        user_id="U1",
        team_id="T1",
        pacer=await _no_stream_budget(),
        interval=0.01,
    )


async def test_reply_without_stream_budget_is_posted_whole_with_its_blocks(
    slack: SlackFake, client: AsyncWebClient
) -> None:
    sources = {"type": "context", "elements": [{"type": "mrkdwn", "text": "[1] a.pdf"}]}
    reply = await _reply_without_stream_budget(client)
    for piece in ("Refunds ", "take 14 days", "【4:0†a.pdf】."):
        reply.append(piece)
        await asyncio.sleep(0.03)  # the pump would have written by now
    assert reply.deferred
    assert slack.calls == []  # nothing written while the answer is collected

    await reply.finish("Refunds take 14 days[1].", [sources])

    assert [c.method for c in slack.calls] == ["chat.postMessage"]
    post = slack.calls[0].args
    assert post["thread_ts"] == "1.000001"
    assert post["blocks"] == [{"type": "markdown", "text": "Refunds take 14 days[1]."}, sources]
    assert slack.thread_text("C1", "1.000001") == "Refunds take 14 days[1]."


async def test_failed_reply_without_stream_budget_keeps_the_text_before_the_notice(
    slack: SlackFake, client: AsyncWebClient
) -> None:
    reply = await _reply_without_stream_budget(client)
    reply.append("Half an answer")
    await asyncio.sleep(0.03)
    await reply.fail("_(Stopped.)_")
    assert [c.method for c in slack.calls] == ["chat.postMessage"]
    assert slack.thread_text("C1", "1.000001") == "Half an answer\n\n_(Stopped.)_"


# -- the bot under a burst -----------------------------------------------------------------

# Small limits, the same on the emulator and in the bot: streams and status lines for two.
SMALL = {
    "chat.startStream": (2, 3.0),
    "chat.stopStream": (2, 3.0),
    "chat.appendStream": (4, 1.0),
    "assistant.threads.setStatus": (2, 3.0),
}
CHANNELS = [f"C{n}" for n in range(6)]


@pytest.fixture
def reply_options() -> ReplyOptions:
    limits = {method: RateLimit(n, window=w) for method, (n, w) in SMALL.items()}
    return ReplyOptions(
        interval=0.05, stop_button_after=30, slack_limits={**SLACK_LIMITS, **limits}
    )


@pytest.fixture
def slack_pacing() -> bool:
    return True


@pytest.fixture
def bot_settings(bot_settings: Settings, slack_pacing: bool) -> Settings:
    return bot_settings.model_copy(update={"slack_pacing": slack_pacing})


def _answer(request: dict[str, Any]) -> Reply:
    question = request["messages"][-1]["content"]
    return text_reply(f"Answer to {question}, written in several small pieces.", chunk_size=4)


async def _burst(slack: SlackFake, model: ModelFake, bot: BotUnderTest) -> list[str]:
    for method, (n, window) in SMALL.items():
        slack.rate_limits[method] = slack_server.RateLimit(n, window=window)
    model.token_interval = 0.01
    model.set_default(_answer)
    mentions = [slack.app_mention(c, "U1", f"<@UBOT> question {c}") for c in CHANNELS]
    await asyncio.gather(*(slack.deliver(bot.url, m) for m in mentions))
    return [str(m["event"]["ts"]) for m in mentions]


async def test_a_burst_keeps_to_slacks_limits_and_every_answer_arrives_whole(
    slack: SlackFake, model: ModelFake, bot: BotUnderTest
) -> None:
    threads = await _burst(slack, model, bot)
    await bot.bot.conversations.idle()

    for channel, ts in zip(CHANNELS, threads, strict=True):
        expected = f"Answer to question {channel}, written in several small pieces."
        assert slack.thread_text(channel, ts) == expected
    assert slack.rate_limited == []
    streamed = {c.args["channel"] for c in slack.calls_of("chat.startStream")}
    posted = {c.args["channel"] for c in slack.calls_of("chat.postMessage")}
    assert len(streamed) <= 2 and posted  # the others waited for no stream: posted whole
    assert streamed | posted == set(CHANNELS) and not streamed & posted
    assert len(slack.calls_of("assistant.threads.setStatus")) <= 2  # the rest skipped


@pytest.mark.parametrize("slack_pacing", [False])
async def test_the_same_burst_unpaced_meets_429s(
    slack: SlackFake, model: ModelFake, bot: BotUnderTest
) -> None:
    await _burst(slack, model, bot)
    await slack.wait_for(lambda: "chat.startStream" in slack.rate_limited, timeout=5)
    await bot.bot.conversations.close()  # the rest would wait out Retry-After
