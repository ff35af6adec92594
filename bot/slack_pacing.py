"""Slack's published rate limits, kept on our side: calls wait for room instead of earning 429s.

Slack limits each Web API method per workspace and app ("Tier 2: 20+ per minute", ...;
chat.postMessage about one per second per channel, bursts allowed) and answers a call past
the limit with HTTP 429 and `Retry-After`. A bot that sends first and backs off later wastes
those calls and stalls on `Retry-After`; the pacer holds each call until the method has room.

    pacer = SlackPacer()
    client = PacedWebClient(pacer=pacer, token=..., base_url=...)  # every call waits its turn
    if pacer.ready("assistant.threads.setStatus"):  # optional calls are skipped instead
        ...

Each (method, channel if the limit is per channel) has a sliding window. A call counts from
the moment it is sent until `window` seconds after its answer arrived: Slack counts it when the
request arrives, somewhere in between, so however long requests take on the way, no `window`
seconds of Slack's clock ever see more than `limit` of our calls. One process paces itself
only; replicas share Slack's budget, and slack_sdk's retry handler stays as the backstop.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from aiohttp import FormData
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.web.async_slack_response import AsyncSlackResponse

__all__ = ["SLACK_LIMITS", "PacedWebClient", "RateLimit", "SlackPacer"]


@dataclass(frozen=True, slots=True)
class RateLimit:
    """At most `limit` calls in any `window` seconds, per method (or per method and channel)."""

    limit: int
    window: float = 60.0
    per_channel: bool = False


# https://api.slack.com/docs/rate-limits: the tiers are "N+ per minute"; we keep to N.
TIER_2 = RateLimit(20)
TIER_3 = RateLimit(50)
TIER_4 = RateLimit(100)

#: The documented limits of the methods the bot calls. Methods not listed pass freely.
SLACK_LIMITS: Mapping[str, RateLimit] = {
    "auth.test": TIER_4,  # "Special"
    "users.info": TIER_4,
    "conversations.info": TIER_3,
    "conversations.replies": TIER_3,
    "conversations.history": TIER_3,
    # "About one per second per channel, short bursts allowed": 5 in any 5 s per channel.
    "chat.postMessage": RateLimit(5, window=5.0, per_channel=True),
    "chat.update": TIER_3,
    "chat.postEphemeral": TIER_4,
    "chat.delete": TIER_3,
    "chat.startStream": TIER_2,  # reportedly
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


class _Window:
    """The calls of one (method, scope) that still count: those in flight, and the answer
    times of the others, oldest first (answers are recorded as they arrive, so in order)."""

    __slots__ = ("answered", "in_flight", "limit", "turn")

    def __init__(self, limit: RateLimit) -> None:
        self.limit = limit
        self.in_flight = 0
        self.answered: deque[float] = deque()
        self.turn = asyncio.Lock()  # callers that have to wait, first come first served

    def delay(self, now: float) -> float:
        """Seconds until a call may be sent (0: now). Never too early; maybe too late when
        every counted call is still in flight (each frees `window` after its answer)."""
        self._forget(now)
        if self.in_flight + len(self.answered) < self.limit.limit:
            return 0.0
        if self.answered:
            return max(self.answered[0] + self.limit.window - now, 0.001)
        return self.limit.window

    def idle(self, now: float) -> bool:
        self._forget(now)
        return not (self.in_flight or self.answered or self.turn.locked())

    def _forget(self, now: float) -> None:
        # Slack's window drops a call `window` seconds after it arrived, ours after its answer.
        while self.answered and self.answered[0] <= now - self.limit.window:
            self.answered.popleft()


class SlackPacer:
    """Per-method sliding windows of Slack calls; `limits={}` paces nothing (a Slack plan
    with higher limits: `SLACK_PACING=false`)."""

    def __init__(
        self,
        limits: Mapping[str, RateLimit] = SLACK_LIMITS,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._limits, self._clock = dict(limits), clock
        self._windows: dict[tuple[str, str], _Window] = {}
        self._sweep_at = 256  # per-channel windows pile up: idle ones are dropped now and then

    def ready(self, method: str, scope: str = "") -> bool:
        """Whether a call would be sent now, without waiting (nothing is recorded): optional
        calls (status line, Stop button) are skipped rather than queued when it says no."""
        window = self._window(method, scope)
        if window is None:
            return True
        return not window.turn.locked() and window.delay(self._clock()) == 0.0

    async def wait(self, method: str, scope: str = "") -> None:
        """Waits until a call would be sent now (nothing is recorded).

        A caller that calls right after (no `await` in between) is sure to go through at once:
        `SlackReply` waits here, outside its request timeout, and lets text pile up meanwhile.
        """
        window = self._window(method, scope)
        if window is not None:
            await self._wait(window)

    async def take(self, method: str, scope: str = "") -> None:
        """Waits until a call is allowed, then records one made now."""
        async with self.sending(method, scope):
            pass

    @asynccontextmanager
    async def sending(self, method: str, scope: str = "") -> AsyncIterator[None]:
        """Waits for room, then counts the call made inside the block until `window` seconds
        after it ends (an error or a 429 counts too: Slack may have counted it)."""
        window = self._window(method, scope)
        if window is None:
            yield
            return
        await self._wait(window)
        window.in_flight += 1  # no await since the room was seen: nobody else took it
        try:
            yield
        finally:
            window.in_flight -= 1
            window.answered.append(self._clock())

    async def _wait(self, window: _Window) -> None:
        if not window.turn.locked() and window.delay(self._clock()) == 0.0:
            return
        async with window.turn:  # first come, first served
            # Room comes back at a time known in advance (a call leaving the window), or not
            # before `window` if every counted call is still in flight: sleep, then look again.
            delay = window.delay(self._clock())
            while delay > 0:
                await asyncio.sleep(delay)
                delay = window.delay(self._clock())

    def _window(self, method: str, scope: str) -> _Window | None:
        limit = self._limits.get(method)
        if limit is None:
            return None
        key = (method, scope if limit.per_channel else "")
        window = self._windows.get(key)
        if window is None:
            if len(self._windows) >= self._sweep_at:
                self._sweep()
            window = self._windows[key] = _Window(limit)
        return window

    def _sweep(self) -> None:
        now = self._clock()
        for key in [k for k, w in self._windows.items() if w.idle(now)]:
            del self._windows[key]
        self._sweep_at = max(256, 2 * len(self._windows))


class PacedWebClient(AsyncWebClient):
    """slack_sdk's client with every Web API call paced by `pacer` (the channel of the call,
    for limits per channel, is read from its arguments, whichever way slack_sdk sends them)."""

    def __init__(self, *, pacer: SlackPacer, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.pacer = pacer
        self._auth_test: asyncio.Future[AsyncSlackResponse] | None = None

    async def auth_test(self, **kwargs: Any) -> AsyncSlackResponse:
        """Callers at the same time share one call. Bolt checks the token on the first event
        and remembers it, but every event of a burst at start-up asks before the first answer:
        each would spend the method's budget, and their acks wait for room."""
        if kwargs:
            return await super().auth_test(**kwargs)
        if self._auth_test is None:
            self._auth_test = asyncio.ensure_future(super().auth_test())
            self._auth_test.add_done_callback(self._auth_test_done)
        return await asyncio.shield(self._auth_test)  # one caller giving up stops no other

    def _auth_test_done(self, call: asyncio.Future[AsyncSlackResponse]) -> None:
        self._auth_test = None
        if not call.cancelled():
            call.exception()  # retrieved here: every caller may have given up

    async def api_call(
        self,
        api_method: str,
        *,
        http_verb: str = "POST",
        files: dict[Any, Any] | None = None,
        data: dict[Any, Any] | FormData | None = None,
        params: dict[Any, Any] | None = None,
        json: dict[Any, Any] | None = None,
        headers: dict[Any, Any] | None = None,
        auth: dict[Any, Any] | None = None,
    ) -> AsyncSlackResponse:
        async with self.pacer.sending(api_method, _channel_of(json, params, data)):
            return await super().api_call(
                api_method,
                http_verb=http_verb,
                files=files,
                data=data,
                params=params,
                json=json,
                headers=headers,
                auth=auth,
            )


def _channel_of(*arguments: object) -> str:
    # chat.* methods send JSON, GET methods query parameters, a few methods a form.
    for args in arguments:
        if isinstance(args, dict):
            channel = args.get("channel") or args.get("channel_id")
            if channel:
                return str(channel)
    return ""
