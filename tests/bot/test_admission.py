"""A burst of mentions is set up a few at a time (`ReplyOptions.concurrent_starts`): the rest
wait their turn, stored, and every one is answered."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from bot.conversations import ReplyOptions
from tests.bot.conftest import BotUnderTest
from tests.fakes.model_server import ModelFake, text_reply
from tests.fakes.slack_server import SlackFake
from tests.local_http import serve

DOWNLOAD_SECONDS = 0.3


@pytest.fixture
def reply_options() -> ReplyOptions:
    return ReplyOptions(interval=0.05, stop_button_after=30, concurrent_starts=2)


@pytest.fixture
async def slow_files() -> AsyncIterator[tuple[str, list[float]]]:
    """A file host whose downloads take DOWNLOAD_SECONDS; yields its URL and the arrivals."""
    arrivals: list[float] = []

    async def download(_request: web.Request) -> web.Response:
        arrivals.append(time.monotonic())
        await asyncio.sleep(DOWNLOAD_SECONDS)
        return web.Response(text="meeting notes", content_type="text/plain")

    app = web.Application()
    app.router.add_get("/{name}", download)
    async with serve(app) as url:
        yield url, arrivals


async def test_a_burst_is_set_up_two_at_a_time_and_all_of_it_answered(
    slack: SlackFake,
    model: ModelFake,
    bot: BotUnderTest,
    slow_files: tuple[str, list[float]],
) -> None:
    model.set_default(lambda _request: text_reply("Answered."))
    # The files a mention carries are downloaded while its answer is set up: slow downloads
    # show how many set-ups run at once.
    url, arrivals = slow_files
    mentions = [slack.app_mention(f"C{i}", "U1", "<@UBOT> hello") for i in range(6)]
    for i, mention in enumerate(mentions):
        mention["event"]["files"] = [
            {
                "id": f"F{i}",
                "name": "notes.txt",
                "mimetype": "text/plain",
                "size": 13,
                "url_private_download": f"{url}/notes{i}.txt",
            }
        ]

    deliveries = await asyncio.gather(*(slack.deliver(bot.url, m) for m in mentions))

    assert all(d.status == 200 for d in deliveries)  # acked while the set-ups wait
    await bot.bot.conversations.idle()
    for mention in mentions:
        event = mention["event"]
        assert slack.thread_text(event["channel"], event["ts"]) == "Answered."
    assert len(arrivals) == 6
    assert slack.calls_of("conversations.replies") == []  # the events said which files
    # Two at a time: the downloads come in three waves, each a download apart.
    arrivals.sort()
    assert arrivals[2] - arrivals[0] >= DOWNLOAD_SECONDS * 0.9
    assert arrivals[4] - arrivals[2] >= DOWNLOAD_SECONDS * 0.9
    assert arrivals[1] - arrivals[0] < DOWNLOAD_SECONDS * 0.5
