"""One streamed reply against the emulator: what happens when its end is interrupted."""

from __future__ import annotations

import asyncio

import pytest
from slack_sdk.web.async_client import AsyncWebClient

from bot.slack_pacing import SlackPacer
from bot.slack_reply import SlackReply
from tests.fakes.slack_server import SlackFake


async def test_cancelling_the_end_of_an_answer_never_cuts_a_write_in_half(
    slack: SlackFake, client: AsyncWebClient
) -> None:
    # A write that reached Slack but whose answer was never read would be sent again (a
    # second stream, the text twice). Cancelling `finish` mid-write lets the write complete.
    slack.slow_method("chat.startStream", 0.3)
    reply = SlackReply(
        client,
        channel="C1",
        thread_ts="1.000001",
        user_id="U1",
        team_id="T1",
        pacer=SlackPacer(limits={}),
        interval=0.01,
    )
    reply.append("Hello there.")
    await asyncio.sleep(0.1)  # the pump is inside chat.startStream now
    finishing = asyncio.create_task(reply.finish())
    await asyncio.sleep(0.05)
    finishing.cancel()
    with pytest.raises(asyncio.CancelledError):
        await finishing
    call = await slack.next_call("chat.startStream")
    await asyncio.sleep(0.05)  # the pump reads Slack's answer
    assert reply.message_ts == [call.response["ts"]]
