"""Socket Mode end to end: the real bot with `SLACK_APP_TOKEN` set, over the fake's WebSocket.

`bot/server.py` starts Bolt's `AsyncSocketModeHandler` (slack_sdk's aiohttp `SocketModeClient`):
it calls `apps.connections.open` with the app-level token, connects to the returned URL, and
acks every envelope with its `envelope_id` after Bolt ran the listeners. The fake sends the
envelopes (`socket_deliver`) and returns the acks; nothing arrives over `/slack/events`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import pytest
from aiohttp import web
from pydantic import SecretStr
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from assistants import ManualClock
from bot.app import Bot
from bot.conversations import ReplyOptions
from bot.runtime import Runtime
from bot.server import SLACK, StartupError, http_app
from bot.settings import Settings
from tests.fakes.model_server import ModelFake, text_reply
from tests.fakes.slack_server import SlackFake

REPLY_OPTIONS = ReplyOptions(interval=0.05, stop_button_after=30)


@dataclass
class SocketBot:
    http_url: str  # health and metrics; Slack traffic goes over the socket
    bot: Bot


@pytest.fixture
def socket_settings(bot_settings: Settings, slack: SlackFake) -> Settings:
    return bot_settings.model_copy(update={"slack_app_token": SecretStr(slack.app_token)})


@pytest.fixture
async def socket_bot(
    socket_settings: Settings, slack: SlackFake, clock: ManualClock
) -> AsyncIterator[SocketBot]:
    """Started like the `bot` fixture; `runner.setup()` returns once the socket is connected."""
    runner = web.AppRunner(
        http_app(Runtime(socket_settings, clock=clock), slack=True, reply_options=REPLY_OPTIONS)
    )
    try:
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        started = runner.app[SLACK].bot
        assert isinstance(started, Bot)
        yield SocketBot(f"http://127.0.0.1:{port}", started)
    finally:
        await runner.cleanup()  # closes the socket; the fake (an earlier fixture) outlives it


# -- the fake's Socket Mode, on its own --------------------------------------------------------


async def test_connections_open_takes_only_the_app_token(slack: SlackFake) -> None:
    client = AsyncWebClient(base_url=slack.url)
    for token, error in [
        (slack.bot_token, "not_allowed_token_type"),
        ("xapp-unknown", "invalid_auth"),
    ]:
        with pytest.raises(SlackApiError) as refused:
            await client.apps_connections_open(app_token=token)
        assert refused.value.response["error"] == error
    with pytest.raises(SlackApiError) as wrong_type:
        await AsyncWebClient(token=slack.app_token, base_url=slack.url).auth_test()
    assert wrong_type.value.response["error"] == "not_allowed_token_type"

    opened = await client.apps_connections_open(app_token=slack.app_token)
    root = slack.root_url.replace("http://", "ws://")
    assert opened["url"].startswith(f"{root}link/?ticket=")
    assert [call.method for call in slack.calls] == ["apps.connections.open"]


async def test_hello_first_and_tickets_work_once(slack: SlackFake) -> None:
    client = AsyncWebClient(base_url=slack.url)
    url = (await client.apps_connections_open(app_token=slack.app_token))["url"]
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(url) as ws:
            hello = await ws.receive_json(timeout=5)
            assert hello["type"] == "hello"
            assert hello["num_connections"] == 1
            assert hello["connection_info"] == {"app_id": slack.app_id}
            with pytest.raises(aiohttp.WSServerHandshakeError) as reused:
                await session.ws_connect(url)
            assert reused.value.status == 401

            # A client that acks by hand: the envelope shape slack_sdk parses.
            mention = slack.app_mention("C1", "U1", "<@UBOT> hi")
            delivery = asyncio.create_task(slack.socket_deliver(mention, timeout=5))
            envelope = await ws.receive_json(timeout=5)
            assert envelope == {
                "envelope_id": envelope["envelope_id"],
                "payload": mention,
                "type": "events_api",
                "accepts_response_payload": False,
                "retry_attempt": 0,
                "retry_reason": "",
            }
            await ws.send_str(json.dumps({"envelope_id": envelope["envelope_id"]}))
            assert await delivery == {"envelope_id": envelope["envelope_id"]}

            assert await slack.socket_disconnect("link_disabled") == 1
            assert await ws.receive_json(timeout=5) == {
                "type": "disconnect",
                "reason": "link_disabled",
                "debug_info": {"host": "applink-fake"},
            }
    await slack.wait_for(lambda: slack.socket_connections[0].closed)


# -- the bot in Socket Mode --------------------------------------------------------------------


async def test_mention_over_the_socket_is_acked_and_answered(
    slack: SlackFake, model: ModelFake, socket_bot: SocketBot
) -> None:
    opened = await slack.next_call("apps.connections.open")
    assert opened.response["url"].startswith("ws://")
    model.script(text_reply("The answer is **4**."))
    mention = slack.app_mention("C1", "U1", "<@UBOT> what is 2+2?")

    ack = await slack.socket_deliver(mention)

    delivered = slack.socket_deliveries[-1]
    assert ack == {"envelope_id": delivered.envelope["envelope_id"]}  # no payload for events
    assert delivered.elapsed < 3  # inside Slack's ack deadline
    await slack.next_call("chat.stopStream", timeout=10)
    assert slack.thread_text("C1", mention["event"]["ts"]) == "The answer is **4**."
    assert slack.calls_of("chat.startStream")[0].args["thread_ts"] == mention["event"]["ts"]
    assert model.requests[0]["messages"][-1] == {"role": "user", "content": "what is 2+2?"}
    assert slack.deliveries == []  # nothing went over HTTP
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{socket_bot.http_url}/healthz") as health:
            assert health.status == 200  # the HTTP side still serves health in Socket Mode


async def test_slash_command_is_answered_in_the_ack(
    slack: SlackFake, socket_bot: SocketBot
) -> None:
    command = slack.command_payload(text="list", channel_id="D1")

    ack = await slack.socket_deliver(command)

    envelope = slack.socket_deliveries[-1].envelope
    assert envelope["type"] == "slash_commands"
    assert envelope["accepts_response_payload"] is True
    # Bolt turns `ack(text=..., response_type=...)` into the ack's payload; Slack shows it.
    assert ack["envelope_id"] == envelope["envelope_id"]
    assert ack["payload"]["response_type"] == "ephemeral"
    assert "*Math Tutor* ✓ *(answering here)*" in ack["payload"]["text"]
    assert slack.calls_of("response_url") == []  # the response_url is not used


async def test_a_slack_retry_over_the_socket_is_acked_but_answered_once(
    slack: SlackFake, model: ModelFake, socket_bot: SocketBot
) -> None:
    model.script(text_reply("Once."), text_reply("Twice?"))
    mention = slack.app_mention("C1", "U1", "<@UBOT> hello")
    await slack.socket_deliver(mention)
    retry = await slack.socket_deliver(mention, retry_attempt=1, retry_reason="timeout")

    assert retry == {"envelope_id": slack.socket_deliveries[-1].envelope["envelope_id"]}
    await slack.next_call("chat.stopStream", timeout=10)
    await socket_bot.bot.conversations.idle()
    assert len(model.requests) == 1
    assert slack.thread_text("C1", mention["event"]["ts"]) == "Once."


async def test_refresh_requested_reconnects_and_answering_goes_on(
    slack: SlackFake, model: ModelFake, socket_bot: SocketBot
) -> None:
    model.script(text_reply("Before."), text_reply("After."))
    await slack.next_call("apps.connections.open")
    before = slack.app_mention("C1", "U1", "<@UBOT> one")
    await slack.socket_deliver(before)
    await slack.next_call("chat.stopStream", timeout=10)

    assert await slack.socket_disconnect("refresh_requested") == 1
    await slack.next_call("apps.connections.open")  # a fresh URL: tickets are single-use
    await slack.wait_for(lambda: slack.socket_connections[0].closed)  # the old link dropped

    after = slack.app_mention("C1", "U1", "<@UBOT> two")
    await slack.socket_deliver(after)  # waits for the new connection, then for the ack
    assert slack.socket_deliveries[-1].connection == 1
    await slack.next_call("chat.stopStream", timeout=10)
    assert slack.thread_text("C1", after["event"]["ts"]) == "After."
    assert len(slack.socket_connections) == 2


async def test_a_dropped_connection_is_reopened(
    slack: SlackFake, model: ModelFake, socket_bot: SocketBot
) -> None:
    model.script(text_reply("Still here."))
    await slack.next_call("apps.connections.open")
    assert await slack.socket_close() == 1  # no disconnect message: the link just goes away
    await slack.next_call("apps.connections.open")

    mention = slack.app_mention("C1", "U1", "<@UBOT> are you there?")
    await slack.socket_deliver(mention)
    await slack.next_call("chat.stopStream", timeout=10)
    assert slack.thread_text("C1", mention["event"]["ts"]) == "Still here."


async def test_socket_mode_needs_no_signing_secret(
    slack: SlackFake, model: ModelFake, socket_settings: Settings, clock: ManualClock
) -> None:
    settings = socket_settings.model_copy(update={"slack_signing_secret": None})
    runner = web.AppRunner(
        http_app(Runtime(settings, clock=clock), slack=True, reply_options=REPLY_OPTIONS)
    )
    try:
        await runner.setup()
        model.script(text_reply("No secret needed."))
        mention = slack.app_mention("C1", "U1", "<@UBOT> hi")
        await slack.socket_deliver(mention)
        await slack.next_call("chat.stopStream", timeout=10)
    finally:
        await runner.cleanup()


async def test_a_wrong_app_token_stops_startup_with_a_clear_error(
    slack: SlackFake, socket_settings: Settings, clock: ManualClock
) -> None:
    settings = socket_settings.model_copy(update={"slack_app_token": SecretStr("xoxb-wrong")})
    runner = web.AppRunner(
        http_app(Runtime(settings, clock=clock), slack=True, reply_options=REPLY_OPTIONS)
    )
    try:
        with pytest.raises(
            StartupError, match=r"refused SLACK_APP_TOKEN \(not_allowed_token_type\)"
        ):
            await asyncio.wait_for(runner.setup(), timeout=10)
    finally:
        await runner.cleanup()
