"""The Slack emulator must be indistinguishable from Slack to slack_sdk and Bolt.

Every test drives the real ``AsyncWebClient`` (or Bolt) over HTTP against ``SlackFake``, so a
wrong argument shape, a missing header or an unexpected answer fails here first rather than in
the bot's tests.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import aiohttp
import pytest
from aiohttp import web
from slack_bolt.app.async_app import AsyncApp
from slack_bolt.context.say_stream.async_say_stream import AsyncSayStream
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.signature import SignatureVerifier
from slack_sdk.web.async_client import AsyncWebClient

from tests.fakes.slack_server import RateLimit, SlackFake, run_slack_fake


@pytest.fixture
async def slack() -> AsyncIterator[SlackFake]:
    async with run_slack_fake() as fake:
        yield fake


@pytest.fixture
def client(slack: SlackFake) -> AsyncWebClient:
    # No retry handlers: a 429 must surface unless a test opts into retrying.
    return AsyncWebClient(token=slack.bot_token, base_url=slack.url, retry_handlers=[])


def _error(exc: pytest.ExceptionInfo[SlackApiError]) -> str:
    return str(exc.value.response["error"])


async def _serve(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port = runner.addresses[0][1]
    return runner, f"http://127.0.0.1:{port}"


@dataclass
class Receiver:
    """A stand-in bot endpoint that checks signatures the way Bolt does."""

    secret: str
    url: str = ""
    requests: list[tuple[bytes, dict[str, str]]] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.requests.append((body, dict(request.headers)))
        verifier = SignatureVerifier(self.secret)
        valid = verifier.is_valid(
            body,
            request.headers.get("X-Slack-Request-Timestamp"),
            request.headers.get("X-Slack-Signature"),
        )
        return web.Response(status=200 if valid else 401, text="" if valid else "invalid")


@pytest.fixture
async def receiver(slack: SlackFake) -> AsyncIterator[Receiver]:
    target = Receiver(slack.signing_secret)
    app = web.Application()
    app.router.add_post("/slack/events", target.handle)
    runner, base = await _serve(app)
    target.url = base + "/slack/events"
    yield target
    await runner.cleanup()


# -- identity and auth ----------------------------------------------------------------------


async def test_auth_test_and_lookups(slack: SlackFake, client: AsyncWebClient) -> None:
    auth = await client.auth_test()
    assert (auth["user_id"], auth["bot_id"], auth["team_id"], auth["team"]) == (
        "UBOT",
        "BBOT",
        "T1",
        "Test",
    )
    assert auth["url"].startswith("https://")

    user = await client.users_info(user="U1")
    assert user["user"]["name"] == "alice"
    assert user["user"]["profile"]["email"] == "alice@example.com"
    slack.add_user("U2", "bob", tz="Europe/Paris")
    assert (await client.users_info(user="U2"))["user"]["tz"] == "Europe/Paris"
    with pytest.raises(SlackApiError) as missing:
        await client.users_info(user="U404")
    assert _error(missing) == "user_not_found"

    channel = (await client.conversations_info(channel="C1"))["channel"]
    assert channel["id"] == "C1" and channel["is_channel"] and not channel["is_im"]
    im = (await client.conversations_info(channel="D1"))["channel"]
    assert im["is_im"] and im["user"] == "U1"
    with pytest.raises(SlackApiError) as bad_channel:
        await client.conversations_info(channel="#general")
    assert _error(bad_channel) == "channel_not_found"


async def test_tokens_are_checked_like_slack(slack: SlackFake) -> None:
    anonymous = AsyncWebClient(base_url=slack.url, retry_handlers=[])
    with pytest.raises(SlackApiError) as not_authed:
        await anonymous.auth_test()
    assert _error(not_authed) == "not_authed"
    assert not_authed.value.response.status_code == 200  # Slack reports errors in the body

    wrong = AsyncWebClient(token="xoxb-wrong", base_url=slack.url, retry_handlers=[])
    with pytest.raises(SlackApiError) as invalid:
        await wrong.chat_postMessage(channel="C1", text="hi")
    assert _error(invalid) == "invalid_auth"
    assert slack.calls == []  # rejected requests never reach a method

    right = AsyncWebClient(token=slack.bot_token, base_url=slack.url, retry_handlers=[])
    with pytest.raises(SlackApiError) as unknown:
        await right.api_call("chat.nonsense")
    assert _error(unknown) == "unknown_method"


# -- messages ---------------------------------------------------------------------------------


async def test_post_update_and_read_back(slack: SlackFake, client: AsyncWebClient) -> None:
    parent = await client.chat_postMessage(channel="C1", text="question?")
    assert parent["channel"] == "C1" and parent["message"]["text"] == "question?"
    blocks = [{"type": "markdown", "text": "**thinking**"}]
    reply = await client.chat_postMessage(
        channel="C1",
        thread_ts=parent["ts"],
        text="thinking",
        blocks=blocks,
        metadata={"event_type": "assistant_reply", "event_payload": {"run": "r1"}},
    )
    assert float(reply["ts"]) > float(parent["ts"])  # monotonic ts
    call = await slack.next_call("chat.postMessage")
    assert call.args == {"channel": "C1", "text": "question?"}
    call = await slack.next_call("chat.postMessage")
    assert call.args["blocks"] == blocks and call.response["ts"] == reply["ts"]

    updated = await client.chat_update(channel="C1", ts=reply["ts"], text="answer: 4")
    assert updated["text"] == "answer: 4" and updated["message"]["edited"]["user"] == "UBOT"

    replies = await client.conversations_replies(channel="C1", ts=parent["ts"])
    assert [m["text"] for m in replies["messages"]] == ["question?", "answer: 4"]
    assert replies["messages"][1]["blocks"] == blocks  # omitted blocks are kept by chat.update
    assert "metadata" not in replies["messages"][1]  # only with include_all_metadata
    with_meta = await client.conversations_replies(
        channel="C1", ts=parent["ts"], include_all_metadata=True
    )
    assert with_meta["messages"][1]["metadata"]["event_payload"] == {"run": "r1"}
    assert slack.thread_text("C1", parent["ts"]) == "answer: 4"

    history = await client.conversations_history(channel="C1")
    assert [m["ts"] for m in history["messages"]] == [parent["ts"]]  # top level only
    assert history["messages"][0]["reply_count"] == 1

    ephemeral = await client.chat_postEphemeral(channel="C1", user="U1", text="only you")
    assert slack.ephemerals[0]["ts"] == ephemeral["message_ts"]
    assert len(slack.messages("C1")) == 2  # ephemerals are not channel messages

    await client.reactions_add(channel="C1", name="eyes", timestamp=parent["ts"])
    with pytest.raises(SlackApiError) as twice:
        await client.reactions_add(channel="C1", name="eyes", timestamp=parent["ts"])
    assert _error(twice) == "already_reacted"

    await client.chat_delete(channel="C1", ts=reply["ts"])
    with pytest.raises(SlackApiError) as gone:
        await client.chat_update(channel="C1", ts=reply["ts"], text="x")
    assert _error(gone) == "message_not_found"


async def test_form_encoded_bodies_are_understood(slack: SlackFake, client: AsyncWebClient) -> None:
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "hi"}}]
    # What older code and Bolt's ``say`` may send: form fields, JSON-typed ones as strings.
    response = await client.api_call(
        "chat.postMessage",
        data={"channel": "C1", "text": "hi", "blocks": json.dumps(blocks), "mrkdwn": "true"},
    )
    call = await slack.next_call("chat.postMessage")
    assert call.args["blocks"] == blocks
    assert slack.messages("C1")[0]["blocks"] == blocks
    with pytest.warns(UserWarning, match="text"), pytest.raises(SlackApiError) as no_text:
        await client.chat_postMessage(channel="C1")  # slack_sdk warns, Slack refuses
    assert _error(no_text) == "no_text"
    assert response["ok"]


async def test_views_publish_and_assistant_thread_calls(
    slack: SlackFake, client: AsyncWebClient
) -> None:
    view = {
        "type": "home",
        "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "hi"}}],
    }
    published = await client.views_publish(user_id="U1", view=view)
    assert published["view"]["type"] == "home" and slack.home_views["U1"]["blocks"]

    await client.assistant_threads_setStatus(
        channel_id="D1", thread_ts="10.0", status="is thinking…", loading_messages=["Reading…"]
    )
    assert slack.thread_status("D1", "10.0") == "is thinking…"
    await client.assistant_threads_setSuggestedPrompts(
        channel_id="D1", prompts=[{"title": "Summarise", "message": "Summarise this"}]
    )
    await client.assistant_threads_setTitle(channel_id="D1", thread_ts="10.0", title="Maths")
    prompts = await slack.next_call("assistant.threads.setSuggestedPrompts")
    assert prompts.args["prompts"][0]["title"] == "Summarise"
    title = await slack.next_call("assistant.threads.setTitle")
    assert title.args == {"channel_id": "D1", "thread_ts": "10.0", "title": "Maths"}

    await client.chat_postMessage(channel="D1", thread_ts="10.0", text="4")
    assert slack.thread_status("D1", "10.0") == ""  # Slack clears the status on the reply


# -- streaming ------------------------------------------------------------------------------


async def test_stream_trio_concatenates_text(slack: SlackFake, client: AsyncWebClient) -> None:
    parent = await client.chat_postMessage(channel="D1", text="2+2?")
    start = await client.chat_startStream(channel="D1", thread_ts=parent["ts"], markdown_text="Th")
    ts = start["ts"]
    assert start["channel"] == "D1"
    assert slack.stream_state("D1", ts) == "streaming"
    await client.chat_appendStream(channel="D1", ts=ts, markdown_text="e answer")
    await client.chat_appendStream(channel="D1", ts=ts, markdown_text=" is")
    stop = await client.chat_stopStream(
        channel="D1", ts=ts, markdown_text=" 4.", blocks=[{"type": "divider"}]
    )
    assert stop["message"]["text"] == "The answer is 4."
    assert stop["message"]["blocks"] == [{"type": "divider"}]
    assert slack.thread_text("D1", parent["ts"]) == "The answer is 4."
    assert slack.stream_state("D1", ts) == "stopped"

    replies = await client.conversations_replies(channel="D1", ts=parent["ts"])
    assert replies["messages"][-1]["text"] == "The answer is 4."
    with pytest.raises(SlackApiError) as after_stop:
        await client.chat_appendStream(channel="D1", ts=ts, markdown_text="more")
    assert _error(after_stop) == "message_not_in_streaming_state"


async def test_stream_argument_errors(slack: SlackFake, client: AsyncWebClient) -> None:
    with pytest.raises(SlackApiError) as no_recipient:
        await client.chat_startStream(channel="C1", thread_ts="10.0", markdown_text="x")
    assert _error(no_recipient) == "missing_recipient_user_id"
    with pytest.raises(SlackApiError) as no_team:
        await client.chat_startStream(
            channel="C1", thread_ts="10.0", recipient_user_id="U1", markdown_text="x"
        )
    assert _error(no_team) == "missing_recipient_team_id"
    with pytest.raises(SlackApiError) as no_thread:
        await client.api_call("chat.startStream", json={"channel": "D1"})
    assert _error(no_thread) == "invalid_arguments"
    assert no_thread.value.response["response_metadata"]["messages"]

    ts = (await client.chat_startStream(channel="D1", thread_ts="10.0"))["ts"]
    with pytest.raises(SlackApiError) as too_long:
        await client.chat_appendStream(channel="D1", ts=ts, markdown_text="x" * 12_001)
    assert _error(too_long) == "msg_too_long"
    await client.chat_appendStream(channel="D1", ts=ts, markdown_text="x" * 12_000)
    with pytest.raises(SlackApiError) as unknown_ts:
        await client.chat_appendStream(channel="D1", ts="1.000001", markdown_text="x")
    assert _error(unknown_ts) == "message_not_found"

    slack.streaming_enabled = False
    with pytest.raises(SlackApiError) as disabled:
        await client.chat_startStream(channel="D1", thread_ts="10.0", markdown_text="x")
    assert _error(disabled) == "unknown_method"


async def test_chat_stream_helper_buffers_appends(slack: SlackFake, client: AsyncWebClient) -> None:
    parent = await client.chat_postMessage(channel="C1", text="tell me")
    streamer = await client.chat_stream(
        channel="C1",
        thread_ts=parent["ts"],
        recipient_user_id="U1",
        recipient_team_id="T1",
        buffer_size=10,
    )
    assert await streamer.append(markdown_text="Once ") is None  # buffered, nothing sent
    await streamer.append(markdown_text="upon a ")  # 12 chars: chat.startStream
    await streamer.append(markdown_text="time, far away")  # chat.appendStream
    assert await streamer.append(markdown_text=" end") is None
    await streamer.stop()

    assert [call.method for call in slack.calls[1:]] == [
        "chat.startStream",
        "chat.appendStream",
        "chat.stopStream",
    ]
    # The helper sends markdown_text *chunks*, not markdown_text; the fake reads both.
    start = slack.calls_of("chat.startStream")[0]
    assert start.args["chunks"] == [{"type": "markdown_text", "text": "Once upon a "}]
    assert "markdown_text" not in start.args
    assert slack.thread_text("C1", parent["ts"]) == "Once upon a time, far away end"


async def test_expired_stream_keeps_text_and_allows_update(
    slack: SlackFake, client: AsyncWebClient
) -> None:
    slack.expire_stream_after(1)
    ts = (await client.chat_startStream(channel="D1", thread_ts="10.0", markdown_text="par"))["ts"]
    await client.chat_appendStream(channel="D1", ts=ts, markdown_text="tial")
    with pytest.raises(SlackApiError) as append:
        await client.chat_appendStream(channel="D1", ts=ts, markdown_text=" lost")
    assert _error(append) == "message_not_in_streaming_state"
    with pytest.raises(SlackApiError) as stop:
        await client.chat_stopStream(channel="D1", ts=ts, markdown_text=" lost")
    assert _error(stop) == "message_not_in_streaming_state"
    assert slack.stream_state("D1", ts) == "expired"
    assert slack.thread_text("D1", "10.0") == "partial"

    slack.expire_stream_after(0)  # now every new stream is dead before its first append
    dead = (await client.chat_startStream(channel="D1", thread_ts="11.0", markdown_text="x"))["ts"]
    with pytest.raises(SlackApiError):
        await client.chat_appendStream(channel="D1", ts=dead, markdown_text="y")
    slack.expire_stream_after(None)

    # The documented fallback: finish the message with chat.update on the stream's ts.
    await client.chat_update(channel="D1", ts=ts, text="partial, finished")
    assert slack.thread_text("D1", "10.0") == "partial, finished"


# -- rate limits ----------------------------------------------------------------------------


async def test_forced_429_is_retried_by_slack_sdk(slack: SlackFake) -> None:
    retrying = AsyncWebClient(
        token=slack.bot_token,
        base_url=slack.url,
        retry_handlers=[AsyncRateLimitErrorRetryHandler(max_retry_count=1)],
    )
    slack.force_429("chat.postMessage", times=1, retry_after=1)
    started = time.monotonic()
    response = await retrying.chat_postMessage(channel="C1", text="eventually")
    assert response["ok"] and time.monotonic() - started >= 1  # honoured Retry-After
    assert slack.rate_limited == ["chat.postMessage"]
    assert len(slack.calls_of("chat.postMessage")) == 1  # the 429 is not a recorded call
    assert [m["text"] for m in slack.messages("C1")] == ["eventually"]


async def test_tiers_enforced_over_a_sliding_window() -> None:
    now = [1000.0]
    async with run_slack_fake(clock=lambda: now[0]) as fake:
        sdk = AsyncWebClient(token=fake.bot_token, base_url=fake.url, retry_handlers=[])
        for _ in range(20):  # chat.startStream is Tier 2: 20 per minute
            await sdk.chat_startStream(channel="D1", thread_ts="10.0")
        with pytest.raises(SlackApiError) as limited:
            await sdk.chat_startStream(channel="D1", thread_ts="10.0")
        assert limited.value.response.status_code == 429
        assert limited.value.response.headers["Retry-After"] == "60"
        assert _error(limited) == "ratelimited"
        assert fake.rate_limited == ["chat.startStream"]

        now[0] += 60.5  # the window slides; no real waiting
        await sdk.chat_startStream(channel="D1", thread_ts="10.0")

        for _ in range(5):  # chat.postMessage: about 1/s per channel, small bursts
            await sdk.chat_postMessage(channel="C1", text="burst")
        with pytest.raises(SlackApiError):
            await sdk.chat_postMessage(channel="C1", text="too fast")
        await sdk.chat_postMessage(channel="C2", text="another channel is fine")

        fake.enforce_rate_limits = False
        await sdk.chat_postMessage(channel="C1", text="limits off")
        fake.rate_limits["chat.update"] = RateLimit(0)
        fake.enforce_rate_limits = True
        ts = fake.messages("C2")[0]["ts"]
        with pytest.raises(SlackApiError):
            await sdk.chat_update(channel="C2", ts=ts, text="x")


# -- files --------------------------------------------------------------------------------------


async def test_files_upload_v2_shares_into_thread(slack: SlackFake, client: AsyncWebClient) -> None:
    parent = await client.chat_postMessage(channel="C1", text="make a chart")
    result = await client.files_upload_v2(
        channel="C1",
        thread_ts=parent["ts"],
        content=b"\x89PNG fake",
        filename="a.png",
        initial_comment="Here it is",
    )
    file_id = result["file"]["id"]
    assert slack.file_content(file_id) == b"\x89PNG fake"

    upload_url = await slack.next_call("files.getUploadURLExternal")
    assert upload_url.args == {"filename": "a.png", "length": "9"}  # a POST query string
    complete = await slack.next_call("files.completeUploadExternal")
    assert complete.args["files"] == [{"id": file_id, "title": "a.png"}]

    thread = slack.thread_messages("C1", parent["ts"])
    shared = thread[-1]
    assert shared["text"] == "Here it is" and shared["thread_ts"] == parent["ts"]
    assert shared["files"][0]["name"] == "a.png" and shared["files"][0]["mimetype"] == "image/png"

    info = await client.files_info(file=file_id)
    assert info["file"]["size"] == 9 and "C1" in info["file"]["channels"]
    async with aiohttp.ClientSession() as http:
        headers = {"Authorization": f"Bearer {slack.bot_token}"}
        async with http.get(info["file"]["url_private"], headers=headers) as download:
            assert download.status == 200 and await download.read() == b"\x89PNG fake"
        async with http.get(info["file"]["url_private_download"]) as anonymous:
            # Like Slack: no token means a redirect to an HTML sign-in page, still 200.
            assert anonymous.status == 200 and anonymous.content_type == "text/html"


async def test_user_files_download_with_the_bot_token(
    slack: SlackFake, client: AsyncWebClient
) -> None:
    file = slack.add_user_file("notes.txt", b"hello file", "text/plain")
    assert file["url_private"].startswith(slack.root_url)
    assert (await client.files_info(file=file["id"]))["file"]["name"] == "notes.txt"
    async with aiohttp.ClientSession() as http:
        headers = {"Authorization": f"Bearer {slack.bot_token}"}
        async with http.get(file["url_private_download"], headers=headers) as response:
            assert await response.read() == b"hello file"
            assert response.content_type == "text/plain"
    with pytest.raises(SlackApiError) as missing:
        await client.files_info(file="F404")
    assert _error(missing) == "file_not_found"


# -- injection and waiting ------------------------------------------------------------------


async def test_fail_method_injects_errors(slack: SlackFake, client: AsyncWebClient) -> None:
    slack.fail_method("assistant.threads.setStatus", error="missing_scope", times=1)
    with pytest.raises(SlackApiError) as failed:
        await client.assistant_threads_setStatus(channel_id="D1", thread_ts="1.0", status="…")
    assert _error(failed) == "missing_scope"
    await client.assistant_threads_setStatus(channel_id="D1", thread_ts="1.0", status="…")
    first, second = slack.calls_of("assistant.threads.setStatus")
    assert first.response == {"ok": False, "error": "missing_scope"} and second.response["ok"]

    slack.fail_method("chat.postMessage", error="is_archived")
    for _ in range(2):
        with pytest.raises(SlackApiError):
            await client.chat_postMessage(channel="C1", text="x")
    slack.clear_failures()
    await client.chat_postMessage(channel="C1", text="x")
    assert len(slack.messages("C1")) == 1  # failed calls change nothing


async def test_next_call_and_wait_for_wake_on_arrival(
    slack: SlackFake, client: AsyncWebClient
) -> None:
    waiter = asyncio.create_task(slack.next_call("chat.postMessage"))
    appeared = asyncio.create_task(slack.wait_for(lambda: len(slack.messages("C1")) == 2))
    await client.chat_postMessage(channel="C1", text="one")
    await client.chat_postMessage(channel="C1", text="two")
    assert (await waiter).args["text"] == "one"
    await appeared
    assert (await slack.next_call("chat.postMessage")).args["text"] == "two"
    with pytest.raises(TimeoutError):
        await slack.next_call("chat.postMessage", timeout=0.05)


# -- events to the bot ----------------------------------------------------------------------


async def test_deliveries_are_signed_and_stored(
    slack: SlackFake, client: AsyncWebClient, receiver: Receiver
) -> None:
    mention = slack.app_mention(channel="C1", user="U1", text="<@UBOT> 2+2?")
    delivered = await slack.deliver(receiver.url, mention)
    assert delivered.status == 200
    body, headers = receiver.requests[0]
    assert json.loads(body) == mention and "X-Slack-Retry-Num" not in headers
    assert (
        mention["event_id"].startswith("Ev") and mention["authorizations"][0]["user_id"] == "UBOT"
    )

    retried = await slack.deliver(receiver.url, mention, retry_num=1, retry_reason="http_timeout")
    assert retried.status == 200
    _, headers = receiver.requests[1]
    assert (headers["X-Slack-Retry-Num"], headers["X-Slack-Retry-Reason"]) == ("1", "http_timeout")

    forged = await slack.deliver(receiver.url, mention, signature="v0=" + "0" * 64)
    stale = await slack.deliver(receiver.url, mention, timestamp=int(time.time()) - 600)
    assert (forged.status, stale.status) == (401, 401)

    # The mentioned message exists in Slack's history, once, despite three deliveries.
    ts = mention["event"]["ts"]
    replies = await client.conversations_replies(channel="C1", ts=ts)
    assert [m["text"] for m in replies["messages"]] == ["<@UBOT> 2+2?"]
    follow_up = slack.message(channel="C1", user="U1", text="and 3+3?", thread_ts=ts)
    await slack.deliver(receiver.url, follow_up)
    assert [m["user"] for m in slack.thread_messages("C1", ts)] == ["U1", "U1"]
    assert follow_up["event_id"] != mention["event_id"]

    shared = slack.message(
        channel="D1",
        user="U1",
        text="see file",
        channel_type="im",
        files=[slack.add_user_file("a.csv", b"x,y", "text/csv")],
    )
    assert shared["event"]["subtype"] == "file_share"


async def test_commands_and_actions_are_form_encoded(slack: SlackFake, receiver: Receiver) -> None:
    response = await slack.command(receiver.url, text="summarise", channel_id="C1")
    assert response.status == 200
    body, headers = receiver.requests[0]
    assert headers["Content-Type"] == "application/x-www-form-urlencoded"
    form = {key: values[0] for key, values in parse_qs(body.decode()).items()}
    assert (form["command"], form["text"], form["user_id"]) == ("/assistant", "summarise", "U1")

    # response_url is served by the fake and recorded as a call.
    async with aiohttp.ClientSession() as http:
        async with http.post(form["response_url"], json={"text": "done"}) as posted:
            assert posted.status == 200
    assert (await slack.next_call("response_url")).args["text"] == "done"

    action = {"type": "block_actions", "user": {"id": "U1"}, "actions": [{"action_id": "retry"}]}
    assert (await slack.action(receiver.url, action)).status == 200
    body, _ = receiver.requests[1]
    payload = json.loads(parse_qs(body.decode())["payload"][0])
    assert payload["actions"] == [{"action_id": "retry"}] and payload["response_url"]


async def test_bolt_app_round_trip(slack: SlackFake) -> None:
    """Bolt verifies the signature, calls auth.test, and say_stream reaches the fake."""
    bolt_client = AsyncWebClient(token=slack.bot_token, base_url=slack.url)
    app = AsyncApp(signing_secret=slack.signing_secret, client=bolt_client)

    @app.event("app_mention")
    async def on_mention(say_stream: AsyncSayStream, set_status: Any) -> None:
        await set_status(status="is thinking…")
        streamer = await say_stream(buffer_size=1)
        await streamer.append(markdown_text="4")
        await streamer.stop(markdown_text=".")

    runner, base = await _serve(app.web_app())
    try:
        mention = slack.app_mention(channel="C1", user="U1", text="<@UBOT> 2+2?")
        delivered = await slack.deliver(base + "/slack/events", mention)
        assert delivered.status == 200 and delivered.elapsed < 3
        stop = await slack.next_call("chat.stopStream")
        start = slack.calls_of("chat.startStream")[0]
        assert (start.args["recipient_user_id"], start.args["recipient_team_id"]) == ("U1", "T1")
        assert stop.response["ok"]
        assert slack.thread_text("C1", mention["event"]["ts"]) == "4."
        assert slack.calls_of("auth.test")
    finally:
        await runner.cleanup()
