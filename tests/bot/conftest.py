"""The real bot in HTTP mode, against the Slack Web API emulator and the scripted model.

Slack events arrive as real signed HTTP requests at `/slack/events`; the bot's Web API calls
go over HTTP to the emulator; its model calls go to the scripted model server.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp import web
from slack_sdk.web.async_client import AsyncWebClient

from assistants import ManualClock
from bot.app import Bot
from bot.conversations import ReplyOptions
from bot.runtime import Runtime
from bot.server import SLACK, http_app
from bot.settings import Settings
from storage import Database
from tests.fakes.model_server import ModelFake
from tests.fakes.slack_server import SlackFake, run_slack_fake

ASSISTANTS_YML = """\
defaults:
  dm: Math Tutor
  channel: Helper
assistants:
  - name: Math Tutor
    model: fake-model
    description: A personal math tutor.
    instructions: You are a personal math tutor.
  - name: Helper
    model: fake-model
    description: Answers questions about our documents.
    instructions: You are a helpful assistant.
    tools:
      - type: file_search
      - type: function
        function: get_current_time
      - type: function
        function: get_slack_user
      - type: function
        function: schedule_reminder
      - type: function
        function:
          name: explode
          description: A function with no handler.
"""


@dataclass
class BotUnderTest:
    url: str  # the /slack/events URL
    bot: Bot
    clock: ManualClock


@pytest.fixture
async def slack() -> AsyncIterator[SlackFake]:
    async with run_slack_fake() as fake:
        yield fake


@pytest.fixture
async def client(slack: SlackFake) -> AsyncIterator[AsyncWebClient]:
    """A plain Web API client of the emulator, for tests of one reply without the bot."""
    client = AsyncWebClient(token=slack.bot_token, base_url=slack.url)
    yield client
    if client.session is not None:
        await client.session.close()


@pytest.fixture
def bot_settings(
    tmp_path: Path, slack: SlackFake, model: ModelFake, database: Database
) -> Settings:
    (tmp_path / "assistants.yml").write_text(ASSISTANTS_YML)
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        slack_bot_token=slack.bot_token,
        slack_signing_secret=slack.signing_secret,
        slack_app_token=None,
        slack_api_url=slack.url,
        openai_base_url=model.url,
        openai_api_key="model-key",
        model_max_retries=0,
        database_url=os.environ.get("TEST_DATABASE_URL") or database.url,
        data_dir=tmp_path / "data",
        assistants_file=tmp_path / "assistants.yml",
        assistants_api_key=None,
        shutdown_grace_seconds=1.0,
    )


@pytest.fixture
def reply_options() -> ReplyOptions:
    """Fast pacing for tests; a module overrides this fixture to test other pacing."""
    return ReplyOptions(interval=0.05, stop_button_after=30)


@pytest.fixture
async def bot(
    bot_settings: Settings, clock: ManualClock, reply_options: ReplyOptions
) -> AsyncIterator[BotUnderTest]:
    runtime = Runtime(bot_settings, clock=clock)
    app = http_app(runtime, slack=True, reply_options=reply_options)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    started = app[SLACK].bot
    assert isinstance(started, Bot)
    try:
        yield BotUnderTest(f"http://127.0.0.1:{port}/slack/events", started, clock)
    finally:
        await runner.cleanup()
