"""A Slack Web API and Events API emulator for tests and benchmarks.

The bot talks to Slack through the official ``slack_sdk`` ``AsyncWebClient`` and receives
events through Bolt, so the honest fake is a real HTTP server on both sides:

* **Web API** (``fake.url``, ends in ``/api/``): the methods the bot uses, answering the way
  Slack does — HTTP 200 with ``{"ok": true, ...}`` or ``{"ok": false, "error": ...}``, HTTP 429
  with ``Retry-After`` when rate limited, ``not_authed``/``invalid_auth`` without the bot token.
  Arguments are read from the query string, a form body and a JSON body alike, because
  ``slack_sdk`` uses all three (see ``_read_args``). Messages, streams, files, reactions and
  statuses are kept in memory, so ``conversations.replies`` shows what the bot posted.
* **Events API** (``fake.deliver``, ``fake.command``, ``fake.action``): signed requests to the
  bot's ``/slack/events``, with Slack's retry headers on demand. A user message delivered this
  way is also stored, as it would already exist in Slack when its event arrives.
* **Socket Mode** (``fake.socket_deliver``, ``fake.socket_disconnect``, ``fake.socket_close``):
  ``apps.connections.open`` takes the app-level token (``fake.app_token``, ``xapp-``) and
  answers a single-use ``ws://.../link/?ticket=...`` URL on the same server; the WebSocket
  greets with ``hello``, carries envelopes (``events_api``, ``slash_commands``,
  ``interactive``) and takes the client's ``{"envelope_id": ...}`` acks. This is what
  ``slack_sdk.socket_mode.aiohttp.SocketModeClient`` (Bolt's default async Socket Mode
  client) expects.

Tests wait on what the fake recorded (``next_call``, ``wait_for``), never on the clock.

Usage::

    async with run_slack_fake() as slack:
        client = AsyncWebClient(token=slack.bot_token, base_url=slack.url)
        await client.chat_postMessage(channel="C1", text="hi")
        call = await slack.next_call("chat.postMessage")
"""

from __future__ import annotations

import asyncio
import base64
import copy
import hashlib
import hmac
import itertools
import json
import math
import mimetypes
import re
import secrets
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal
from urllib.parse import quote, urlencode
from zoneinfo import ZoneInfo

import aiohttp
from aiohttp import web

__all__ = [
    "DEFAULT_RATE_LIMITS",
    "TIER_1",
    "TIER_2",
    "TIER_3",
    "TIER_4",
    "Call",
    "Delivery",
    "RateLimit",
    "SlackFake",
    "SocketConnection",
    "SocketDelivery",
    "run_slack_fake",
]

Json = dict[str, Any]

MARKDOWN_TEXT_LIMIT = 12_000  # chat.*Stream markdown_text, per call
TEXT_TRUNCATE_AT = 40_000  # chat.postMessage truncates longer text
MAX_BLOCKS = 50
MAX_LOADING_MESSAGES = 10

_TS_START = 1_700_000_000_000_000  # microseconds; the first generated ts is 1700000000.000100
_TS_STEP = 100
_SOCKET_HOST = "applink-fake"  # debug_info.host in Socket Mode hello/disconnect messages
_CHANNEL_ID = re.compile(r"^[CDG][A-Z0-9]+$")
_USER_ID = re.compile(r"^[UW][A-Z0-9]+$")

# Arguments Slack documents as JSON; form-encoded requests carry them as JSON strings.
_JSON_ARGS = frozenset(
    {"blocks", "attachments", "metadata", "chunks", "files", "view", "prompts", "loading_messages"}
)


# -- rate limits ---------------------------------------------------------------------------


@dataclass(frozen=True)
class RateLimit:
    """At most ``limit`` calls in any ``window`` seconds, per method (or per method and channel)."""

    limit: int
    window: float = 60.0
    per_channel: bool = False


# https://api.slack.com/docs/rate-limits: tiers are "N+ per minute".
TIER_1 = RateLimit(1)
TIER_2 = RateLimit(20)
TIER_3 = RateLimit(50)
TIER_4 = RateLimit(100)

DEFAULT_RATE_LIMITS: Mapping[str, RateLimit] = {
    "auth.test": TIER_4,  # "Special"; generous in practice
    "users.info": TIER_4,
    "conversations.info": TIER_3,
    "conversations.replies": TIER_3,
    "conversations.history": TIER_3,
    # "About one per second per channel, short bursts allowed": 5 in any 5 s per channel.
    "chat.postMessage": RateLimit(5, window=5.0, per_channel=True),
    "chat.update": TIER_3,
    "chat.postEphemeral": TIER_4,
    "chat.delete": TIER_3,
    "chat.startStream": TIER_2,
    "chat.appendStream": TIER_4,
    "chat.stopStream": TIER_2,
    "assistant.threads.setStatus": TIER_4,  # "Special"
    "assistant.threads.setSuggestedPrompts": TIER_4,
    "assistant.threads.setTitle": TIER_4,
    "reactions.add": TIER_3,
    "views.publish": TIER_4,
    "files.getUploadURLExternal": TIER_4,
    "files.completeUploadExternal": TIER_4,
    "files.info": TIER_4,
}


# -- records -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    """One Web API request that reached a method (authenticated, not rate limited).

    ``args`` merges query string, form and JSON body; JSON-typed arguments (blocks, chunks,
    metadata, ...) are decoded even when sent as strings. ``time`` is the fake's clock
    (``time.monotonic`` by default) at arrival; ``response`` is what the fake answered.
    """

    method: str
    args: Json
    time: float
    response: Json = field(default_factory=dict)


@dataclass(frozen=True)
class Delivery:
    """What the bot answered to a delivered event, command or action."""

    status: int
    text: str
    headers: Mapping[str, str]
    elapsed: float  # seconds; Slack retries when an ack takes longer than 3 s

    def json(self) -> Any:
        return json.loads(self.text)


@dataclass
class SocketConnection:
    """One Socket Mode WebSocket, opened with a ticket from ``apps.connections.open``.

    ``received`` holds every JSON frame the client sent on it (acks), in order. Once told to
    ``disconnect`` (any reason but ``warning``) the fake routes no further envelopes to it.
    """

    ticket: str
    ws: web.WebSocketResponse = field(repr=False)
    received: list[Json] = field(default_factory=list)
    disconnect_reason: str | None = None
    closed: bool = False

    @property
    def live(self) -> bool:
        return not self.closed and self.disconnect_reason is None


@dataclass(frozen=True)
class SocketDelivery:
    """An envelope sent over Socket Mode and the client's ack (``None``: none in time)."""

    envelope: Json
    ack: Json | None
    connection: int  # index into ``SlackFake.socket_connections``; -1: none was live
    elapsed: float  # seconds until the ack; Slack retries after 3 s without one


StreamState = Literal["streaming", "stopped", "expired"]


@dataclass
class _Stream:
    state: StreamState = "streaming"
    appends: int = 0
    chunks: list[Json] = field(default_factory=list)  # non-text chunks (tasks, plans, blocks)


class _SlackError(Exception):
    """A Slack ``{"ok": false}`` answer; extra fields (``response_metadata``) ride along."""

    def __init__(self, error: str, **extra: Any) -> None:
        super().__init__(error)
        self.error = error
        self.extra = extra


def _invalid_arguments(*problems: str) -> _SlackError:
    return _SlackError(
        "invalid_arguments",
        response_metadata={"messages": [f"[ERROR] {problem}" for problem in problems]},
    )


# -- small helpers -------------------------------------------------------------------------


def _ts_key(ts: str) -> tuple[int, int]:
    """Sort key for Slack timestamps; exact, unlike float() on 16-digit values."""
    seconds, _, fraction = ts.partition(".")
    try:
        return int(seconds), int(fraction.ljust(6, "0")[:6])
    except ValueError:
        return 0, 0


def _ts_micros(ts: str) -> int:
    seconds, fraction = _ts_key(ts)
    return seconds * 1_000_000 + fraction


def _truthy(value: Any) -> bool:
    """Slack's booleans arrive as JSON booleans or as "1"/"0"/"true"/"false" form strings."""
    if isinstance(value, str):
        return value.strip().lower() in {"1", "true", "yes"}
    return bool(value)


def _int_arg(args: Json, name: str, default: int) -> int:
    value = args.get(name)
    if value in (None, ""):
        return default
    try:
        return int(value)
    except (TypeError, ValueError):
        raise _invalid_arguments(f"invalid value for field: {name}") from None


def _str_arg(args: Json, name: str) -> str | None:
    value = args.get(name)
    if value is None or value == "":
        return None
    return str(value)


def _require(args: Json, name: str) -> str:
    value = _str_arg(args, name)
    if value is None:
        raise _invalid_arguments(f"missing required field: {name}")
    return value


def _encode_cursor(offset: int) -> str:
    return base64.b64encode(f"next:{offset}".encode()).decode()


def _decode_cursor(cursor: str | None) -> int:
    if not cursor:
        return 0
    try:
        return int(base64.b64decode(cursor).decode().removeprefix("next:"))
    except ValueError:
        raise _SlackError("invalid_cursor") from None


def _markdown_of(args: Json) -> str:
    """Text a streaming call adds: ``markdown_text`` plus every ``markdown_text`` chunk."""
    pieces = []
    if args.get("markdown_text") is not None:
        pieces.append(str(args["markdown_text"]))
    for chunk in args.get("chunks") or []:
        if isinstance(chunk, dict) and chunk.get("type") == "markdown_text":
            pieces.append(str(chunk.get("text", "")))
    return "".join(pieces)


def _check_markdown_limits(args: Json) -> None:
    texts = [args.get("markdown_text") or ""]
    texts += [
        chunk.get("text") or ""
        for chunk in args.get("chunks") or []
        if isinstance(chunk, dict) and chunk.get("type") == "markdown_text"
    ]
    if any(len(str(text)) > MARKDOWN_TEXT_LIMIT for text in texts):
        raise _SlackError("msg_too_long")


def _other_chunks(args: Json) -> list[Json]:
    return [
        chunk
        for chunk in args.get("chunks") or []
        if isinstance(chunk, dict) and chunk.get("type") != "markdown_text"
    ]


def _envelope_type(payload: Json) -> str:
    """The Socket Mode envelope type Slack uses for a payload of this shape."""
    if payload.get("type") == "event_callback":
        return "events_api"
    if "command" in payload:
        return "slash_commands"
    return "interactive"


def _check_blocks(blocks: Any) -> None:
    if blocks is None:
        return
    if not isinstance(blocks, list) or not all(isinstance(block, dict) for block in blocks):
        raise _SlackError("invalid_blocks_format")
    if len(blocks) > MAX_BLOCKS:
        raise _SlackError("invalid_blocks")


class SlackFake:
    """The emulator: Web API state and recordings, plus the Events API sender.

    Error injection: ``streaming_enabled``, ``expire_stream_after``, ``fail_method``,
    ``force_429``, ``enforce_rate_limits`` / ``rate_limits``.
    """

    url: str  # Web API base, ends in "/api/" (AsyncWebClient(base_url=...))
    root_url: str  # the server root: upload URLs, url_private, response_url live here

    def __init__(
        self,
        *,
        bot_token: str = "xoxb-test",
        app_token: str = "xapp-test",
        signing_secret: str = "test-signing-secret",
        team_id: str = "T1",
        team_name: str = "Test",
        bot_user_id: str = "UBOT",
        bot_id: str = "BBOT",
        app_id: str = "A1",
        enforce_rate_limits: bool = True,
        rate_limits: Mapping[str, RateLimit] | None = None,
        clock: Callable[[], float] = time.monotonic,
        users: Iterable[Json] = (),
    ) -> None:
        self.url = ""
        self.root_url = ""
        self.bot_token = bot_token
        self.app_token = app_token  # app-level token: apps.connections.open only
        self.signing_secret = signing_secret
        self.team_id = team_id
        self.team_name = team_name
        self.bot_user_id = bot_user_id
        self.bot_id = bot_id
        self.app_id = app_id
        self.enforce_rate_limits = enforce_rate_limits
        self.rate_limits: dict[str, RateLimit] = dict(rate_limits or DEFAULT_RATE_LIMITS)
        self.streaming_enabled = True
        self._clock = clock

        self.calls: list[Call] = []
        self.rate_limited: list[str] = []  # method of every 429 answered
        self._latency: dict[str, float] = {}
        self.deliveries: list[Delivery] = []
        self.users: dict[str, Json] = {}
        self.channels: dict[str, Json] = {}
        self.files: dict[str, Json] = {}
        self.ephemerals: list[Json] = []
        self.home_views: dict[str, Json] = {}
        self.socket_connections: list[SocketConnection] = []  # every one opened, oldest first
        self.socket_deliveries: list[SocketDelivery] = []

        self._messages: dict[str, list[Json]] = {}
        self._streams: dict[tuple[str, str], _Stream] = {}
        self._expire_after: int | None = None
        self._statuses: dict[tuple[str, str], str] = {}
        self._file_bytes: dict[str, bytes] = {}
        self._upload_tokens: dict[str, str] = {}  # upload URL token -> file id
        self._failures: dict[str, list[Any]] = {}  # method -> [error, remaining or None]
        self._forced_429: dict[str, deque[int]] = {}
        self._windows: dict[tuple[str, str], deque[float]] = {}
        self._consumed: dict[str, int] = {}
        self._tickets: set[str] = set()  # issued by apps.connections.open, not yet used
        self._acks: dict[str, asyncio.Future[Json]] = {}  # envelope_id -> the client's ack
        self._changed = asyncio.Condition()
        self._ts = _TS_START
        self._ids = itertools.count(1)
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

        self._methods: dict[str, Callable[[Json], Json]] = {
            "auth.test": self._auth_test,
            "users.info": self._users_info,
            "conversations.info": self._conversations_info,
            "conversations.replies": self._conversations_replies,
            "conversations.history": self._conversations_history,
            "chat.postMessage": self._chat_post_message,
            "chat.update": self._chat_update,
            "chat.postEphemeral": self._chat_post_ephemeral,
            "chat.delete": self._chat_delete,
            "chat.startStream": self._chat_start_stream,
            "chat.appendStream": self._chat_append_stream,
            "chat.stopStream": self._chat_stop_stream,
            "assistant.threads.setStatus": self._set_status,
            "assistant.threads.setSuggestedPrompts": self._recorded_thread_call,
            "assistant.threads.setTitle": self._recorded_thread_call,
            "reactions.add": self._reactions_add,
            "views.publish": self._views_publish,
            "files.getUploadURLExternal": self._files_get_upload_url,
            "files.completeUploadExternal": self._files_complete_upload,
            "files.info": self._files_info,
            "apps.connections.open": self._apps_connections_open,
        }

        self.add_user(bot_user_id, "assistant", real_name="Assistant", is_bot=True)
        self.add_user("U1", "alice", real_name="Alice Example", email="alice@example.com")
        for user in users:
            self.users[user["id"]] = user

    # -- configuration -----------------------------------------------------------------------

    def add_user(
        self,
        user_id: str,
        name: str,
        *,
        real_name: str | None = None,
        tz: str = "UTC",
        is_bot: bool = False,
        email: str | None = None,
        **extra: Any,
    ) -> Json:
        """Add (or replace) a ``users.info`` entry shaped like Slack's user object."""
        offset = ZoneInfo(tz).utcoffset(datetime.now())
        real = real_name or name
        profile: Json = {"real_name": real, "display_name": name, "real_name_normalized": real}
        if email:
            profile["email"] = email
        user: Json = {
            "id": user_id,
            "team_id": self.team_id,
            "name": name,
            "deleted": False,
            "real_name": real,
            "tz": tz,
            "tz_label": tz,
            "tz_offset": int(offset.total_seconds()) if offset else 0,
            "profile": profile,
            "is_admin": False,
            "is_owner": False,
            "is_bot": is_bot,
            "is_app_user": False,
            "updated": 1_700_000_000,
            **extra,
        }
        self.users[user_id] = user
        return user

    def add_channel(
        self, channel_id: str, name: str | None = None, *, user: str | None = None, **extra: Any
    ) -> Json:
        """Register a conversation; unknown C/G/D ids are synthesised on first use anyway."""
        is_im = channel_id.startswith("D")
        channel: Json = {
            "id": channel_id,
            "created": 1_700_000_000,
            "is_archived": False,
            "is_org_shared": False,
            "context_team_id": self.team_id,
        }
        if is_im:
            channel |= {"is_im": True, "user": user or "U1", "is_user_deleted": False}
        else:
            channel_name = name or channel_id.lower()
            channel |= {
                "name": channel_name,
                "name_normalized": channel_name,
                "is_channel": True,
                "is_group": False,
                "is_im": False,
                "is_mpim": False,
                "is_private": channel_id.startswith("G"),
                "is_general": False,
                "is_shared": False,
                "is_ext_shared": False,
                "is_member": True,
                "creator": "U1",
                "topic": {"value": "", "creator": "", "last_set": 0},
                "purpose": {"value": "", "creator": "", "last_set": 0},
            }
        channel |= extra
        self.channels[channel_id] = channel
        return channel

    def fail_method(
        self, method: str, error: str = "fatal_error", *, times: int | None = None
    ) -> None:
        """``method`` answers ``{"ok": false, "error": error}``, ``times`` times or until cleared.

        The call is still recorded, so tests can assert the bot tried and coped.
        """
        self._failures[method] = [error, times]

    def clear_failures(self, method: str | None = None) -> None:
        if method is None:
            self._failures.clear()
        else:
            self._failures.pop(method, None)

    def slow_method(self, method: str, seconds: float) -> None:
        """``method`` answers ``seconds`` after it arrives (a slow Slack, or a slow network)."""
        self._latency[method] = seconds

    def force_429(self, method: str, times: int = 1, retry_after: int = 1) -> None:
        """The next ``times`` calls of ``method`` get HTTP 429 with ``Retry-After: retry_after``.

        Independent of ``enforce_rate_limits``. Note slack_sdk's retry handler reads only the
        first digit of ``Retry-After`` and adds up to 1 s of jitter.
        """
        self._forced_429.setdefault(method, deque()).extend([retry_after] * times)

    def expire_stream_after(self, n_appends: int | None) -> None:
        """Streams expire once they have taken ``n_appends`` appends (``None``: never).

        Afterwards append/stop answer ``message_not_in_streaming_state`` and the message keeps
        the text streamed so far, as Slack does after its ~5 minute stream lifetime.
        """
        self._expire_after = n_appends
        for stream in self._streams.values():
            self._maybe_expire(stream)

    def expire_stream(self, channel: str, ts: str) -> None:
        """Expire one stream now."""
        stream = self._streams.get((channel, ts))
        if stream is not None and stream.state == "streaming":
            stream.state = "expired"

    # -- inspection --------------------------------------------------------------------------

    def calls_of(self, method: str) -> list[Call]:
        return [call for call in self.calls if call.method == method]

    async def next_call(self, method: str, timeout: float = 5) -> Call:  # noqa: ASYNC109 (part of the API)
        """The oldest call of ``method`` not yet returned by this method, waiting for it.

        Raises ``TimeoutError`` after ``timeout`` seconds so a missing call fails fast.
        """
        async with asyncio.timeout(timeout), self._changed:
            await self._changed.wait_for(
                lambda: len(self.calls_of(method)) > self._consumed.get(method, 0)
            )
            index = self._consumed.get(method, 0)
            self._consumed[method] = index + 1
            return self.calls_of(method)[index]

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 5) -> None:  # noqa: ASYNC109
        """Return once ``predicate()`` holds; re-checked whenever a call, upload or delivery lands.

        Raises ``TimeoutError`` after ``timeout`` seconds.
        """
        async with asyncio.timeout(timeout), self._changed:
            await self._changed.wait_for(predicate)

    def clear_calls(self) -> None:
        """Forget recorded calls and 429s (state such as messages stays)."""
        self.calls.clear()
        self.rate_limited.clear()
        self._consumed.clear()

    def messages(self, channel: str) -> list[Json]:
        """Every stored message of ``channel`` (thread replies included), oldest first."""
        return copy.deepcopy(self._messages.get(channel, []))

    def get_message(self, channel: str, ts: str) -> Json | None:
        found = self._find(channel, ts)
        return copy.deepcopy(found) if found is not None else None

    def thread_messages(self, channel: str, thread_ts: str) -> list[Json]:
        """The thread as ``conversations.replies`` shows it: parent first, then replies."""
        return copy.deepcopy(self._thread(channel, thread_ts))

    def thread_text(self, channel: str, thread_ts: str) -> str:
        """The text of the bot's replies in the thread (streamed ones included), one per line.

        Only the parent is left out, so a bot-started thread shows its replies only.
        """
        return "\n".join(
            message.get("text", "")
            for message in self._thread(channel, thread_ts)
            if message["ts"] != thread_ts and self._is_bot_message(message)
        )

    def stream_state(self, channel: str, ts: str) -> StreamState | None:
        stream = self._streams.get((channel, ts))
        return stream.state if stream else None

    def stream_chunks(self, channel: str, ts: str) -> list[Json]:
        """Non-text chunks (task_update, plan_update, blocks) a stream received, in order."""
        stream = self._streams.get((channel, ts))
        return copy.deepcopy(stream.chunks) if stream else []

    def thread_status(self, channel: str, thread_ts: str) -> str:
        """The current ``setStatus`` line; cleared when the bot replies in the thread."""
        return self._statuses.get((channel, thread_ts), "")

    def file_content(self, file_id: str) -> bytes:
        return self._file_bytes[file_id]

    # -- files shared by users ---------------------------------------------------------------

    def add_user_file(
        self,
        name: str,
        content: bytes,
        mimetype: str | None = None,
        *,
        user: str = "U1",
        title: str | None = None,
    ) -> Json:
        """A file a user shared; its ``url_private`` serves ``content`` given the bot token."""
        self._require_started()
        file_id = self._new_id("F")
        self._file_bytes[file_id] = content
        self.files[file_id] = self._file_object(
            file_id, name, title=title or name, mimetype=mimetype, size=len(content), user=user
        )
        return copy.deepcopy(self.files[file_id])

    # -- event builders ----------------------------------------------------------------------

    def event_callback(
        self, event: Json, *, team_id: str | None = None, event_id: str | None = None
    ) -> Json:
        """The Events API envelope around ``event``; each call gets a fresh ``event_id``."""
        team = team_id or self.team_id
        return {
            "token": "verification-token",
            "team_id": team,
            "context_team_id": team,
            "context_enterprise_id": None,
            "api_app_id": self.app_id,
            "event": event,
            "type": "event_callback",
            "event_id": event_id or self._new_id("Ev"),
            "event_time": int(time.time()),
            "authorizations": [
                {
                    "enterprise_id": None,
                    "team_id": team,
                    "user_id": self.bot_user_id,
                    "is_bot": True,
                    "is_enterprise_install": False,
                }
            ],
            "is_ext_shared_channel": False,
            "event_context": "4-" + secrets.token_urlsafe(24),
        }

    def app_mention(
        self,
        channel: str,
        user: str,
        text: str,
        ts: str | None = None,
        thread_ts: str | None = None,
    ) -> Json:
        """An ``app_mention`` envelope (Slack omits ``files`` here; fetch the message instead)."""
        ts = ts or self._next_ts()
        event: Json = {
            "type": "app_mention",
            "user": user,
            "text": text,
            "ts": ts,
            "client_msg_id": str(uuid.uuid4()),
            "team": self.team_id,
            "channel": channel,
            "event_ts": ts,
        }
        if thread_ts:
            event["thread_ts"] = thread_ts
        return self.event_callback(event)

    def message(
        self,
        channel: str,
        user: str,
        text: str,
        ts: str | None = None,
        thread_ts: str | None = None,
        channel_type: str = "channel",
        bot_id: str | None = None,
        subtype: str | None = None,
        files: list[Json] | None = None,
    ) -> Json:
        """A ``message`` envelope; ``files`` and no subtype make it a ``file_share`` as in Slack."""
        ts = ts or self._next_ts()
        event: Json = {
            "type": "message",
            "user": user,
            "text": text,
            "ts": ts,
            "team": self.team_id,
            "channel": channel,
            "event_ts": ts,
            "channel_type": channel_type,
        }
        if bot_id is None:
            event["client_msg_id"] = str(uuid.uuid4())
        else:
            event["bot_id"] = bot_id
        if files:
            subtype = subtype or "file_share"
            event["files"] = files
            event["upload"] = False
        if subtype:
            event["subtype"] = subtype
        if thread_ts:
            event["thread_ts"] = thread_ts
        return self.event_callback(event)

    def app_home_opened(self, user: str, channel: str, tab: str = "messages") -> Json:
        """Under ``agent_view`` a DM opened is ``app_home_opened`` with ``tab == "messages"``."""
        event: Json = {
            "type": "app_home_opened",
            "user": user,
            "channel": channel,
            "tab": tab,
            "event_ts": self._next_ts(),
        }
        if tab == "home" and user in self.home_views:
            event["view"] = copy.deepcopy(self.home_views[user])
        return self.event_callback(event)

    # -- delivery to the bot -----------------------------------------------------------------

    def sign(self, body: bytes, timestamp: int) -> str:
        """``v0=`` + HMAC-SHA256(signing secret, ``v0:{timestamp}:{body}``), as Slack signs."""
        base = f"v0:{timestamp}:".encode() + body
        digest = hmac.new(self.signing_secret.encode(), base, hashlib.sha256).hexdigest()
        return f"v0={digest}"

    async def deliver(
        self,
        target_url: str,
        payload: Json,
        *,
        retry_num: int | None = None,
        retry_reason: str | None = None,
        timestamp: int | None = None,
        signature: str | None = None,
    ) -> Delivery:
        """POST an Events API payload to the bot, signed; retries carry ``X-Slack-Retry-*``.

        ``timestamp``/``signature`` override the correct values to test rejection.
        """
        await self._store_event_message(payload)
        body = json.dumps(payload).encode()
        return await self._post_signed(
            target_url,
            body,
            "application/json",
            retry_num=retry_num,
            retry_reason=retry_reason,
            timestamp=timestamp,
            signature=signature,
        )

    async def command(
        self,
        target_url: str,
        command: str = "/assistant",
        text: str = "",
        user_id: str = "U1",
        channel_id: str = "C1",
        team_id: str = "T1",
    ) -> Delivery:
        """A slash command, form-encoded as Slack sends it; ``response_url`` points here."""
        form = self.command_payload(command, text, user_id, channel_id, team_id)
        body = urlencode(form).encode()
        return await self._post_signed(target_url, body, "application/x-www-form-urlencoded")

    def command_payload(
        self,
        command: str = "/assistant",
        text: str = "",
        user_id: str = "U1",
        channel_id: str = "C1",
        team_id: str = "T1",
    ) -> dict[str, str]:
        """A slash command's fields (all strings, as in Slack's form body and Socket Mode
        payload); ``response_url`` points here. ``command()`` posts it, ``socket_deliver``
        sends it as a ``slash_commands`` envelope."""
        return {
            "token": "verification-token",
            "team_id": team_id,
            "team_domain": "test",
            "channel_id": channel_id,
            "channel_name": self.channels.get(channel_id, {}).get("name", channel_id.lower()),
            "user_id": user_id,
            "user_name": self.users.get(user_id, {}).get("name", user_id.lower()),
            "command": command,
            "text": text,
            "api_app_id": self.app_id,
            "is_enterprise_install": "false",
            "response_url": self._response_url(),
            "trigger_id": self._trigger_id(),
        }

    async def action(self, target_url: str, payload: Json) -> Delivery:
        """An interactivity request: form field ``payload=<json>``.

        Missing ``token``, ``api_app_id``, ``team``, ``trigger_id`` and (for block actions)
        ``response_url`` are filled in; everything else is sent as given.
        """
        full = self.action_payload(payload)
        body = urlencode({"payload": json.dumps(full)}).encode()
        return await self._post_signed(target_url, body, "application/x-www-form-urlencoded")

    def action_payload(self, payload: Json) -> Json:
        """``payload`` completed as ``action()`` sends it (for ``socket_deliver``)."""
        full = {
            "token": "verification-token",
            "api_app_id": self.app_id,
            "team": {"id": self.team_id, "domain": "test"},
            "trigger_id": self._trigger_id(),
            **payload,
        }
        if full.get("type") == "block_actions":
            full.setdefault("response_url", self._response_url())
        return full

    async def _post_signed(
        self,
        target_url: str,
        body: bytes,
        content_type: str,
        *,
        retry_num: int | None = None,
        retry_reason: str | None = None,
        timestamp: int | None = None,
        signature: str | None = None,
    ) -> Delivery:
        session = self._require_started()
        ts = int(time.time()) if timestamp is None else timestamp
        headers = {
            "Content-Type": content_type,
            "User-Agent": "Slackbot 1.0 (+https://api.slack.com/robots)",
            "X-Slack-Request-Timestamp": str(ts),
            "X-Slack-Signature": signature if signature is not None else self.sign(body, ts),
        }
        if retry_num is not None:
            headers["X-Slack-Retry-Num"] = str(retry_num)
        if retry_reason is not None:
            headers["X-Slack-Retry-Reason"] = retry_reason
        started = time.monotonic()
        async with session.post(target_url, data=body, headers=headers) as response:
            text = await response.text()
            delivery = Delivery(
                status=response.status,
                text=text,
                headers=dict(response.headers),
                elapsed=time.monotonic() - started,
            )
        self.deliveries.append(delivery)
        await self._notify()
        return delivery

    async def _store_event_message(self, payload: Json) -> None:
        """A delivered user message already exists in Slack: store it so history shows it."""
        if payload.get("type") != "event_callback":
            return
        event = payload.get("event") or {}
        if event.get("type") not in {"message", "app_mention"}:
            return
        if event.get("subtype") in {"message_changed", "message_deleted", "message_replied"}:
            return
        channel, ts = event.get("channel"), event.get("ts")
        if not channel or not ts or self._find(channel, ts) is not None:
            return  # app_mention and message events share the message; retries repeat it
        stored = {
            key: copy.deepcopy(value)
            for key, value in event.items()
            if key not in {"channel", "event_ts", "channel_type"}
        }
        stored["type"] = "message"
        self._insert(channel, stored)
        await self._notify()

    # -- Socket Mode -------------------------------------------------------------------------

    async def socket_deliver(
        self,
        payload: Json,
        *,
        envelope_type: str | None = None,
        retry_attempt: int = 0,
        retry_reason: str = "",
        accepts_response_payload: bool | None = None,
        timeout: float = 5,  # noqa: ASYNC109 (part of the API)
    ) -> Json:
        """Send ``payload`` in a Socket Mode envelope and return the client's ack.

        The envelope type follows the payload (``event_callback`` → ``events_api``, a
        ``command`` → ``slash_commands``, else ``interactive``) unless ``envelope_type`` says
        otherwise. ``events_api`` envelopes carry ``retry_attempt``/``retry_reason`` (a Slack
        retry reuses the payload, hence its ``event_id``) and store a delivered user message,
        as ``deliver`` does. The envelope goes to the newest live connection, waiting for one
        (after a ``disconnect`` the client must connect again first). The ack is matched by
        ``envelope_id`` on any connection, since clients ack on whichever is current.

        Raises ``TimeoutError`` when no live connection or no ack comes within ``timeout``
        seconds (Slack would retry); the envelope is recorded with ``ack=None`` then.
        """
        self._require_started()
        kind = envelope_type or _envelope_type(payload)
        if kind == "events_api":
            await self._store_event_message(payload)
        if accepts_response_payload is None:
            # Slack lets commands, modal submissions and option requests answer in the ack.
            accepts_response_payload = kind == "slash_commands" or (
                kind == "interactive"
                and payload.get("type") in {"view_submission", "block_suggestion"}
            )
        envelope: Json = {
            "envelope_id": str(uuid.uuid4()),
            "payload": copy.deepcopy(payload),
            "type": kind,
            "accepts_response_payload": accepts_response_payload,
        }
        if kind == "events_api":
            envelope |= {"retry_attempt": retry_attempt, "retry_reason": retry_reason}
        acked: asyncio.Future[Json] = asyncio.get_running_loop().create_future()
        self._acks[envelope["envelope_id"]] = acked
        index, ack = -1, None
        started = time.monotonic()
        try:
            async with asyncio.timeout(timeout):
                index = await self._live_socket()
                await self.socket_connections[index].ws.send_str(json.dumps(envelope))
                ack = await acked
        except TimeoutError:
            where = "no live Socket Mode connection" if index < 0 else "no ack"
            raise TimeoutError(
                f"{where} for {kind} envelope {envelope['envelope_id']} within {timeout} s"
            ) from None
        finally:
            del self._acks[envelope["envelope_id"]]
            self.socket_deliveries.append(
                SocketDelivery(envelope, ack, index, time.monotonic() - started)
            )
            await self._notify()
        return ack

    async def socket_disconnect(self, reason: str = "refresh_requested") -> int:
        """Send ``{"type": "disconnect", "reason": reason}`` on every live connection.

        Slack sends ``refresh_requested`` every few hours, ``link_disabled`` when Socket Mode
        is switched off, and ``warning`` ~10 s ahead of a refresh. Except for ``warning``, the
        connections get no more envelopes; the fake leaves closing them to the client, which
        is expected to open a new connection (``apps.connections.open``) and drop the old one.
        Returns how many connections were told.
        """
        told = [connection for connection in self.socket_connections if connection.live]
        for connection in told:
            if reason != "warning":
                connection.disconnect_reason = reason
            message = {"type": "disconnect", "reason": reason, "debug_info": {"host": _SOCKET_HOST}}
            await connection.ws.send_str(json.dumps(message))
        await self._notify()
        return len(told)

    async def socket_close(self, code: int = aiohttp.WSCloseCode.GOING_AWAY) -> int:
        """Close every open connection from the server side, without a ``disconnect`` first
        (a dropped link); returns how many were closed."""
        open_ones = [connection for connection in self.socket_connections if not connection.closed]
        for connection in open_ones:
            await connection.ws.close(code=code, message=b"connection dropped")
        return len(open_ones)

    async def _live_socket(self) -> int:
        """Index of the newest live connection, waiting for one."""

        def newest() -> int:
            live = [i for i, c in enumerate(self.socket_connections) if c.live]
            return live[-1] if live else -1

        async with self._changed:
            await self._changed.wait_for(lambda: newest() >= 0)
        return newest()

    def _apps_connections_open(self, args: Json) -> Json:
        """A single-use WebSocket URL. Not rate limited unless added to ``rate_limits``, so
        tests may reconnect at will (slack_sdk sleeps ``Retry-After`` on a 429 here)."""
        ticket = secrets.token_urlsafe(16)
        self._tickets.add(ticket)
        ws_root = "ws" + self.root_url.removeprefix("http")
        return {"url": f"{ws_root}link/?ticket={ticket}&app_id={self.app_id}"}

    async def _socket_link(self, request: web.Request) -> web.StreamResponse:
        """The WebSocket behind an ``apps.connections.open`` URL; each ticket works once."""
        ticket = request.query.get("ticket", "")
        if ticket not in self._tickets:
            return web.Response(status=401, text="invalid_ticket")
        self._tickets.discard(ticket)
        ws = web.WebSocketResponse()  # answers the client's pings (slack_sdk checks pongs)
        await ws.prepare(request)
        connection = SocketConnection(ticket=ticket, ws=ws)
        live = sum(1 for c in self.socket_connections if c.live)
        hello = {
            "type": "hello",
            "num_connections": live + 1,
            "debug_info": {
                "host": _SOCKET_HOST,
                "build_number": 1,
                "approximate_connection_time": 18060,
            },
            "connection_info": {"app_id": self.app_id},
        }
        await ws.send_str(json.dumps(hello))
        self.socket_connections.append(connection)
        await self._notify()
        try:
            async for message in ws:
                if message.type != aiohttp.WSMsgType.TEXT:
                    continue
                try:
                    frame = json.loads(message.data)
                except ValueError:
                    frame = {"invalid_json": message.data}
                if not isinstance(frame, dict):
                    frame = {"invalid_json": message.data}
                connection.received.append(frame)
                acked = self._acks.get(str(frame.get("envelope_id")))
                if acked is not None and not acked.done():
                    acked.set_result(frame)
                await self._notify()
        finally:
            connection.closed = True
            await self._notify()
        return ws

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        """Bind (port 0 = any free port) and fill in ``url`` and ``root_url``."""
        app = web.Application()
        app.router.add_route("*", "/api/{method}", self._api)
        app.router.add_post("/upload/v1/{token}", self._upload)
        app.router.add_get("/files-pri/{team_file}/download/{name}", self._download)
        app.router.add_get("/files-pri/{team_file}/{name}", self._download)
        app.router.add_get("/signin", self._signin)
        app.router.add_post("/response/{id}", self._response_url_post)
        app.router.add_get("/link/", self._socket_link)
        app.router.add_get("/link", self._socket_link)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        await web.TCPSite(self._runner, host, port).start()
        bound_port = self._runner.addresses[0][1]
        self.root_url = f"http://{host}:{bound_port}/"
        self.url = self.root_url + "api/"
        # Deliveries wait at most 10 s: generous for slow CI, while ``elapsed`` shows the ack time.
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))

    async def close(self) -> None:
        await self.socket_close()
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def _require_started(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("SlackFake is not started; use run_slack_fake()")
        return self._session

    # -- Web API dispatch --------------------------------------------------------------------

    async def _api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        arrived = self._clock()
        try:
            args = await self._read_args(request)
        except _SlackError as exc:
            return web.json_response({"ok": False, "error": exc.error, **exc.extra})

        token = self._token_of(request, args)
        if token is None:
            return web.json_response({"ok": False, "error": "not_authed"})
        token_error = self._token_error(method, token)
        if token_error is not None:
            return web.json_response({"ok": False, "error": token_error})
        if method not in self._methods:
            return web.json_response({"ok": False, "error": "unknown_method", "req_method": method})

        retry_after = self._rate_limit(method, args, arrived)
        if retry_after is not None:
            self.rate_limited.append(method)
            await self._notify()
            return web.json_response(
                {"ok": False, "error": "ratelimited"},
                status=429,
                headers={"Retry-After": str(retry_after)},
            )

        if method in self._latency:
            await asyncio.sleep(self._latency[method])
        try:
            self._injected_failure(method)
            body: Json = {"ok": True, **self._methods[method](args)}
        except _SlackError as exc:
            body = {"ok": False, "error": exc.error, **exc.extra}
        self.calls.append(Call(method, args, arrived, copy.deepcopy(body)))
        await self._notify()
        return web.json_response(body)

    @staticmethod
    async def _read_args(request: web.Request) -> Json:
        """Merge query string, form and JSON body.

        slack_sdk sends JSON for most chat/assistant methods, but ``params=`` methods
        (auth.test, chat.delete, reactions.add, setTitle, files.*) go as a POST *query string*
        with an empty form body, and GET methods (users.info, conversations.*) as query only.
        """
        args: Json = dict(request.query)
        if request.method == "POST" and request.can_read_body:
            if request.content_type == "application/json":
                try:
                    body = await request.json()
                except ValueError:
                    raise _SlackError("invalid_json") from None
                if not isinstance(body, dict):
                    raise _SlackError("invalid_json")
                args.update(body)
            elif request.content_type in {
                "application/x-www-form-urlencoded",
                "multipart/form-data",
            }:
                form = await request.post()
                args.update({key: value for key, value in form.items() if isinstance(value, str)})
        for name in _JSON_ARGS & args.keys():
            if isinstance(args[name], str):
                try:
                    args[name] = json.loads(args[name]) if args[name] else None
                except ValueError:
                    error = "invalid_metadata_format" if name == "metadata" else "invalid_arguments"
                    raise _SlackError(error) from None
        return args

    @staticmethod
    def _token_of(request: web.Request, args: Json) -> str | None:
        token = args.pop("token", None)  # Slack also accepts a token argument
        scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer" and credentials.strip():
            return credentials.strip()
        return str(token) if token else None

    def _token_error(self, method: str, token: str) -> str | None:
        """Socket Mode's ``apps.connections.open`` takes only the app-level token, every other
        method only the bot token; a token of the wrong type is ``not_allowed_token_type``."""
        if method == "apps.connections.open":
            if token == self.app_token:
                return None
            wrong_type = token == self.bot_token or token.startswith(("xoxb-", "xoxp-"))
            return "not_allowed_token_type" if wrong_type else "invalid_auth"
        if token == self.bot_token:
            return None
        return "not_allowed_token_type" if token == self.app_token else "invalid_auth"

    def _rate_limit(self, method: str, args: Json, now: float) -> int | None:
        """Retry-After seconds if this call must get a 429, else None (and the call counts)."""
        forced = self._forced_429.get(method)
        if forced:
            return forced.popleft()
        limit = self.rate_limits.get(method)
        if not self.enforce_rate_limits or limit is None:
            return None
        scope = (
            str(args.get("channel") or args.get("channel_id") or "") if limit.per_channel else ""
        )
        window = self._windows.setdefault((method, scope), deque())
        while window and window[0] <= now - limit.window:
            window.popleft()
        if len(window) >= limit.limit:
            return max(1, math.ceil(window[0] + limit.window - now))
        window.append(now)
        return None

    def _injected_failure(self, method: str) -> None:
        failure = self._failures.get(method)
        if failure is None:
            return
        error, remaining = failure
        if remaining is not None:
            if remaining <= 1:
                del self._failures[method]
            else:
                failure[1] = remaining - 1
        raise _SlackError(error)

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    # -- identity ----------------------------------------------------------------------------

    def _auth_test(self, args: Json) -> Json:
        return {
            "url": "https://test.slack.com/",
            "team": self.team_name,
            "user": self.users[self.bot_user_id]["name"],
            "team_id": self.team_id,
            "user_id": self.bot_user_id,
            "bot_id": self.bot_id,
            "is_enterprise_install": False,
        }

    def _users_info(self, args: Json) -> Json:
        user = self.users.get(_str_arg(args, "user") or "")
        if user is None:
            raise _SlackError("user_not_found")
        found = copy.deepcopy(user)
        if _truthy(args.get("include_locale")):
            found.setdefault("locale", "en-US")
        return {"user": found}

    def _conversations_info(self, args: Json) -> Json:
        return {"channel": copy.deepcopy(self._channel(_str_arg(args, "channel")))}

    def _channel(self, channel_id: str | None) -> Json:
        """A known conversation, or one made up for a well-formed id; else ``channel_not_found``."""
        if channel_id is None:
            raise _SlackError("channel_not_found")
        if _USER_ID.match(channel_id):  # posting to a user id lands in the DM with them
            user_id, channel_id = channel_id, "D" + channel_id[1:]
            if channel_id not in self.channels:
                self.add_channel(channel_id, user=user_id)
        if channel_id not in self.channels:
            if not _CHANNEL_ID.match(channel_id):
                raise _SlackError("channel_not_found")
            self.add_channel(channel_id)
        return self.channels[channel_id]

    # -- reading messages --------------------------------------------------------------------

    def _conversations_replies(self, args: Json) -> Json:
        channel = self._channel(_str_arg(args, "channel"))["id"]
        ts = _require(args, "ts")
        parent = self._find(channel, ts)
        if parent is None:
            raise _SlackError("thread_not_found")
        thread = self._thread(channel, parent.get("thread_ts", ts))
        # Slack always answers with the parent first, even when ``oldest`` excludes it.
        selected = thread[:1] + self._between(thread[1:], args)
        return self._page(selected, args, default_limit=1000)

    def _conversations_history(self, args: Json) -> Json:
        channel = self._channel(_str_arg(args, "channel"))["id"]
        top_level = [
            message
            for message in self._messages.get(channel, [])
            if message.get("thread_ts") in (None, message["ts"])
            or message.get("subtype") == "thread_broadcast"
        ]
        newest_first = list(reversed(self._between(top_level, args)))
        page = self._page(newest_first, args, default_limit=100)
        return page | {"pin_count": 0, "channel_actions_ts": None, "channel_actions_count": 0}

    @staticmethod
    def _between(messages: list[Json], args: Json) -> list[Json]:
        inclusive = _truthy(args.get("inclusive"))
        oldest, latest = _str_arg(args, "oldest"), _str_arg(args, "latest")

        def keep(message: Json) -> bool:
            key = _ts_key(message["ts"])
            if oldest is not None and (
                key < _ts_key(oldest) or (key == _ts_key(oldest) and not inclusive)
            ):
                return False
            return not (
                latest is not None
                and (key > _ts_key(latest) or (key == _ts_key(latest) and not inclusive))
            )

        return [message for message in messages if keep(message)]

    def _page(self, messages: list[Json], args: Json, *, default_limit: int) -> Json:
        start = _decode_cursor(_str_arg(args, "cursor"))
        limit = max(1, _int_arg(args, "limit", default_limit))
        page = messages[start : start + limit]
        has_more = start + limit < len(messages)
        with_metadata = _truthy(args.get("include_all_metadata"))
        return {
            "messages": [self._public(message, with_metadata) for message in page],
            "has_more": has_more,
            "response_metadata": {"next_cursor": _encode_cursor(start + limit) if has_more else ""},
        }

    @staticmethod
    def _public(message: Json, with_metadata: bool = True) -> Json:
        shown = copy.deepcopy(message)
        if not with_metadata:
            shown.pop("metadata", None)
        return shown

    # -- posting -----------------------------------------------------------------------------

    def _chat_post_message(self, args: Json) -> Json:
        channel = self._channel(_str_arg(args, "channel"))["id"]
        text = args.get("text")
        blocks, attachments = args.get("blocks"), args.get("attachments")
        if not text and not blocks and not attachments:
            raise _SlackError("no_text")
        _check_blocks(blocks)
        message = self._bot_message(
            text=str(text or "")[:TEXT_TRUNCATE_AT],
            thread_ts=_str_arg(args, "thread_ts"),
            blocks=blocks,
            attachments=attachments,
            metadata=self._metadata(args),
        )
        if message.get("thread_ts") and _truthy(args.get("reply_broadcast")):
            message["subtype"] = "thread_broadcast"
        self._insert(channel, message)
        return {"channel": channel, "ts": message["ts"], "message": self._public(message)}

    def _chat_update(self, args: Json) -> Json:
        channel = self._channel(_str_arg(args, "channel"))["id"]
        message = self._own_message(channel, _str_arg(args, "ts"), "cant_update_message")
        text, blocks = args.get("text"), args.get("blocks")
        if text is None and blocks is None and args.get("attachments") is None:
            raise _SlackError("no_text")
        if text is not None and len(str(text)) > TEXT_TRUNCATE_AT:
            raise _SlackError("msg_too_long")
        _check_blocks(blocks)
        if text is not None:
            message["text"] = str(text)
        # Omitted blocks/attachments are kept; an empty list removes them (Slack's rule).
        for name in ("blocks", "attachments"):
            if args.get(name) is not None:
                if args[name]:
                    message[name] = args[name]
                else:
                    message.pop(name, None)
        metadata = self._metadata(args)
        if metadata is not None:
            message["metadata"] = metadata
        message["edited"] = {"user": self.bot_user_id, "ts": self._next_ts()}
        shown = self._public(message)
        return {"channel": channel, "ts": message["ts"], "text": message["text"], "message": shown}

    def _chat_post_ephemeral(self, args: Json) -> Json:
        channel = self._channel(_str_arg(args, "channel"))["id"]
        user = _str_arg(args, "user")
        if user is None:
            raise _SlackError("user_not_found")
        if not args.get("text") and not args.get("blocks") and not args.get("attachments"):
            raise _SlackError("no_text")
        _check_blocks(args.get("blocks"))
        ts = self._next_ts()
        ephemeral: Json = {
            "channel": channel,
            "user": user,
            "text": str(args.get("text") or ""),
            "ts": ts,
        }
        for name in ("blocks", "attachments", "thread_ts"):
            if args.get(name):
                ephemeral[name] = args[name]
        self.ephemerals.append(ephemeral)
        return {"message_ts": ts}

    def _chat_delete(self, args: Json) -> Json:
        channel = self._channel(_str_arg(args, "channel"))["id"]
        message = self._own_message(channel, _str_arg(args, "ts"), "cant_delete_message")
        self._messages[channel].remove(message)
        return {"channel": channel, "ts": message["ts"]}

    def _own_message(self, channel: str, ts: str | None, not_yours: str) -> Json:
        message = self._find(channel, ts) if ts else None
        if message is None:
            raise _SlackError("message_not_found")
        if not self._is_bot_message(message):
            raise _SlackError(not_yours)
        return message

    @staticmethod
    def _metadata(args: Json) -> Json | None:
        metadata = args.get("metadata")
        if metadata is None:
            return None
        if not isinstance(metadata, dict) or "event_type" not in metadata:
            raise _SlackError("invalid_metadata_format")
        return metadata

    # -- streaming ---------------------------------------------------------------------------

    def _require_streaming(self) -> None:
        if not self.streaming_enabled:
            # Documented for chat.*Stream: "This method is currently not available."
            raise _SlackError("unknown_method")

    def _chat_start_stream(self, args: Json) -> Json:
        self._require_streaming()
        channel = self._channel(_str_arg(args, "channel"))["id"]
        thread_ts = _require(args, "thread_ts")
        if not channel.startswith("D"):
            if _str_arg(args, "recipient_user_id") is None:
                raise _SlackError("missing_recipient_user_id")
            if _str_arg(args, "recipient_team_id") is None:
                raise _SlackError("missing_recipient_team_id")
        _check_markdown_limits(args)
        message = self._bot_message(text=_markdown_of(args), thread_ts=thread_ts)
        self._insert(channel, message)
        stream = self._streams[(channel, message["ts"])] = _Stream(chunks=_other_chunks(args))
        self._maybe_expire(stream)
        return {"channel": channel, "ts": message["ts"]}

    def _maybe_expire(self, stream: _Stream) -> None:
        limit = self._expire_after
        if stream.state == "streaming" and limit is not None and stream.appends >= limit:
            stream.state = "expired"

    def _live_stream(self, args: Json) -> tuple[str, Json, _Stream]:
        channel = self._channel(_str_arg(args, "channel"))["id"]
        ts = _require(args, "ts")
        message = self._find(channel, ts)
        if message is None:
            raise _SlackError("message_not_found")
        stream = self._streams.get((channel, ts))
        if stream is not None:
            self._maybe_expire(stream)  # expire_stream_after() may have been lowered meanwhile
        if stream is None or stream.state != "streaming":
            raise _SlackError("message_not_in_streaming_state")
        return channel, message, stream

    def _chat_append_stream(self, args: Json) -> Json:
        self._require_streaming()
        channel, message, stream = self._live_stream(args)
        if args.get("markdown_text") in (None, "") and not args.get("chunks"):
            raise _SlackError("no_text")
        _check_markdown_limits(args)
        message["text"] = message.get("text", "") + _markdown_of(args)
        stream.chunks += _other_chunks(args)
        stream.appends += 1
        self._maybe_expire(stream)
        return {"channel": channel, "ts": message["ts"]}

    def _chat_stop_stream(self, args: Json) -> Json:
        self._require_streaming()
        channel, message, stream = self._live_stream(args)
        _check_markdown_limits(args)
        _check_blocks(args.get("blocks"))
        message["text"] = message.get("text", "") + _markdown_of(args)
        stream.chunks += _other_chunks(args)
        if args.get("blocks"):
            message["blocks"] = args["blocks"]  # rendered below the streamed text
        metadata = self._metadata(args)
        if metadata is not None:
            message["metadata"] = metadata
        stream.state = "stopped"
        return {"channel": channel, "ts": message["ts"], "message": self._public(message)}

    # -- assistant threads, reactions, views -------------------------------------------------

    def _set_status(self, args: Json) -> Json:
        channel = self._channel(_str_arg(args, "channel_id"))["id"]
        thread_ts = _require(args, "thread_ts")
        if "status" not in args:
            raise _invalid_arguments("missing required field: status")
        loading = args.get("loading_messages")
        if loading is not None and (
            not isinstance(loading, list) or len(loading) > MAX_LOADING_MESSAGES
        ):
            raise _invalid_arguments("loading_messages must be a list of at most 10 strings")
        self._statuses[(channel, thread_ts)] = str(args["status"] or "")
        return {}

    def _recorded_thread_call(self, args: Json) -> Json:
        """setSuggestedPrompts / setTitle: validated, recorded, nothing else to emulate."""
        self._channel(_str_arg(args, "channel_id"))
        return {}

    def _reactions_add(self, args: Json) -> Json:
        channel = self._channel(_str_arg(args, "channel"))["id"]
        name = _str_arg(args, "name")
        if name is None:
            raise _SlackError("invalid_name")
        message = self._find(channel, _str_arg(args, "timestamp") or "")
        if message is None:
            raise _SlackError("message_not_found")
        reactions = message.setdefault("reactions", [])
        reaction = next((r for r in reactions if r["name"] == name), None)
        if reaction is None:
            reactions.append({"name": name, "users": [self.bot_user_id], "count": 1})
        elif self.bot_user_id in reaction["users"]:
            raise _SlackError("already_reacted")
        else:
            reaction["users"].append(self.bot_user_id)
            reaction["count"] += 1
        return {}

    def _views_publish(self, args: Json) -> Json:
        user_id = _str_arg(args, "user_id")
        if user_id is None or user_id not in self.users:
            raise _SlackError("user_not_found")
        view = args.get("view")
        if not isinstance(view, dict) or "type" not in view:
            raise _SlackError("invalid_arguments")
        published = {
            "id": self._new_id("V"),
            "team_id": self.team_id,
            "app_id": self.app_id,
            "bot_id": self.bot_id,
            "hash": secrets.token_hex(8),
            "state": {"values": {}},
            **copy.deepcopy(view),
        }
        self.home_views[user_id] = published
        return {"view": published}

    # -- files -------------------------------------------------------------------------------

    def _files_get_upload_url(self, args: Json) -> Json:
        filename = _require(args, "filename")
        length = _int_arg(args, "length", -1)
        if length < 0:
            raise _invalid_arguments("missing required field: length")
        file_id = self._new_id("F")
        token = secrets.token_urlsafe(16)
        self._upload_tokens[token] = file_id
        self.files[file_id] = self._file_object(
            file_id, filename, title=filename, mimetype=None, size=length, user=self.bot_user_id
        )
        return {"upload_url": f"{self.root_url}upload/v1/{token}", "file_id": file_id}

    def _files_complete_upload(self, args: Json) -> Json:
        entries = args.get("files")
        if not isinstance(entries, list) or not entries:
            raise _invalid_arguments("missing required field: files")
        shared: list[Json] = []
        for entry in entries:
            file_id = entry.get("id") if isinstance(entry, dict) else None
            if file_id not in self._file_bytes:
                raise _SlackError("file_not_found")  # never issued, or bytes never uploaded
            file = self.files[file_id]
            if entry.get("title"):
                file["title"] = entry["title"]
            shared.append(file)
        channel_id = _str_arg(args, "channel_id")
        if channel_id is not None:
            channel = self._channel(channel_id)["id"]
            message = self._bot_message(
                text=str(args.get("initial_comment") or ""),
                thread_ts=_str_arg(args, "thread_ts"),
            )
            message["upload"] = True
            self._insert(channel, message)
            share: Json = {"ts": message["ts"], "channel_name": channel.lower()}
            if message.get("thread_ts"):
                share["thread_ts"] = message["thread_ts"]
            for file in shared:
                kind = "private" if channel.startswith(("D", "G")) else "public"
                file.setdefault("shares", {}).setdefault(kind, {}).setdefault(channel, []).append(
                    share
                )
                file["channels" if kind == "public" else "ims"].append(channel)
            message["files"] = copy.deepcopy(shared)
        return {"files": [{"id": file["id"], "title": file["title"]} for file in shared]}

    def _files_info(self, args: Json) -> Json:
        file = self.files.get(_str_arg(args, "file") or "")
        if file is None:
            raise _SlackError("file_not_found")
        return {
            "file": copy.deepcopy(file),
            "comments": [],
            "response_metadata": {"next_cursor": ""},
        }

    def _file_object(
        self, file_id: str, name: str, *, title: str, mimetype: str | None, size: int, user: str
    ) -> Json:
        mimetype = mimetype or mimetypes.guess_type(name)[0] or "application/octet-stream"
        filetype = name.rsplit(".", 1)[-1].lower() if "." in name else "binary"
        now = int(time.time())
        path = f"{self.team_id}-{file_id}"
        return {
            "id": file_id,
            "created": now,
            "timestamp": now,
            "name": name,
            "title": title,
            "mimetype": mimetype,
            "filetype": filetype,
            "pretty_type": filetype.upper(),
            "user": user,
            "user_team": self.team_id,
            "editable": False,
            "size": size,
            "mode": "hosted",
            "is_external": False,
            "external_type": "",
            "is_public": False,
            "public_url_shared": False,
            "display_as_bot": False,
            "username": "",
            "url_private": f"{self.root_url}files-pri/{path}/{quote(name)}",
            "url_private_download": f"{self.root_url}files-pri/{path}/download/{quote(name)}",
            "permalink": f"https://test.slack.com/files/{user}/{file_id}/{quote(name)}",
            "channels": [],
            "groups": [],
            "ims": [],
            "comments_count": 0,
            "shares": {},
        }

    async def _upload(self, request: web.Request) -> web.Response:
        """The pre-signed upload URL: no token needed; answers ``OK - <bytes>`` as text/plain."""
        file_id = self._upload_tokens.pop(request.match_info["token"], None)
        if file_id is None:
            return web.Response(status=404, text="Not Found")
        if request.content_type == "multipart/form-data":
            form = await request.post()
            field_value = next(
                (value for value in form.values() if isinstance(value, web.FileField)), None
            )
            data = field_value.file.read() if field_value is not None else b""
        else:
            data = await request.read()
        self._file_bytes[file_id] = data
        self.files[file_id]["size"] = len(data)
        await self._notify()
        return web.Response(text=f"OK - {len(data)}")

    async def _download(self, request: web.Request) -> web.StreamResponse:
        """``url_private``: the bot token as Bearer, or Slack's sign-in page (HTML, via 302)."""
        _, _, file_id = request.match_info["team_file"].partition("-")
        scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
        authorised = scheme.lower() == "bearer" and credentials.strip() == self.bot_token
        if not authorised:
            raise web.HTTPFound(f"/signin?redir={quote(request.path)}")
        file = self.files.get(file_id)
        if file is None or file_id not in self._file_bytes:
            return web.Response(status=404, text="File not found")
        return web.Response(body=self._file_bytes[file_id], content_type=file["mimetype"])

    @staticmethod
    async def _signin(request: web.Request) -> web.Response:
        # What a client without the token gets: a 200 HTML page, not the file.
        return web.Response(
            text="<!DOCTYPE html><html><head><title>Slack</title></head>"
            "<body>Sign in to Test</body></html>",
            content_type="text/html",
        )

    async def _response_url_post(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except ValueError:
            return web.json_response({"ok": False, "error": "invalid_payload"}, status=400)
        args = body if isinstance(body, dict) else {"body": body}
        args = {**args, "response_url_id": request.match_info["id"]}
        self.calls.append(Call("response_url", args, self._clock(), {"ok": True}))
        await self._notify()
        return web.json_response({"ok": True})

    # -- message store -----------------------------------------------------------------------

    def _bot_message(
        self,
        *,
        text: str,
        thread_ts: str | None = None,
        blocks: list[Json] | None = None,
        attachments: list[Json] | None = None,
        metadata: Json | None = None,
    ) -> Json:
        message: Json = {
            "type": "message",
            "user": self.bot_user_id,
            "bot_id": self.bot_id,
            "app_id": self.app_id,
            "text": text,
            "ts": self._next_ts(),
            "team": self.team_id,
            "bot_profile": {
                "id": self.bot_id,
                "app_id": self.app_id,
                "name": self.users[self.bot_user_id]["real_name"],
                "team_id": self.team_id,
                "deleted": False,
            },
        }
        if thread_ts:
            message["thread_ts"] = thread_ts
        if blocks:
            message["blocks"] = blocks
        if attachments:
            message["attachments"] = attachments
        if metadata is not None:
            message["metadata"] = metadata
        return message

    def _is_bot_message(self, message: Json) -> bool:
        return message.get("bot_id") == self.bot_id or message.get("user") == self.bot_user_id

    def _insert(self, channel: str, message: Json) -> None:
        self._observe_ts(message["ts"])
        messages = self._messages.setdefault(channel, [])
        messages.append(message)
        messages.sort(key=lambda m: _ts_key(m["ts"]))
        thread_ts = message.get("thread_ts")
        if thread_ts and thread_ts != message["ts"]:
            parent = self._find(channel, thread_ts)
            if parent is not None:
                message.setdefault("parent_user_id", parent.get("user"))
                parent["thread_ts"] = thread_ts
                parent["reply_count"] = parent.get("reply_count", 0) + 1
                users = parent.setdefault("reply_users", [])
                if message.get("user") and message["user"] not in users:
                    users.append(message["user"])
                parent["reply_users_count"] = len(users)
                parent["latest_reply"] = max(
                    parent.get("latest_reply", message["ts"]), message["ts"], key=_ts_key
                )
            if self._is_bot_message(message):
                self._statuses.pop((channel, thread_ts), None)  # Slack clears it on reply

    def _find(self, channel: str, ts: str) -> Json | None:
        return next((m for m in self._messages.get(channel, []) if m["ts"] == ts), None)

    def _thread(self, channel: str, thread_ts: str) -> list[Json]:
        return [
            m
            for m in self._messages.get(channel, [])
            if m["ts"] == thread_ts or m.get("thread_ts") == thread_ts
        ]

    def _next_ts(self) -> str:
        """Monotonic "1700000000.000100"-style timestamps, always after any stored one."""
        self._ts += _TS_STEP
        return f"{self._ts // 1_000_000}.{self._ts % 1_000_000:06d}"

    def _observe_ts(self, ts: str) -> None:
        self._ts = max(self._ts, _ts_micros(ts))

    def _new_id(self, prefix: str) -> str:
        return f"{prefix}{next(self._ids):08X}"

    def _response_url(self) -> str:
        return f"{self.root_url}response/{secrets.token_hex(8)}"

    def _trigger_id(self) -> str:
        return f"{next(self._ids)}.{secrets.randbelow(10**12)}.{secrets.token_hex(16)}"


@asynccontextmanager
async def run_slack_fake(**options: Any) -> AsyncIterator[SlackFake]:
    """Serve a :class:`SlackFake` on 127.0.0.1 (free port) for the ``async with`` body."""
    fake = SlackFake(**options)
    await fake.start()
    try:
        yield fake
    finally:
        await fake.close()
