"""One answer being written into a Slack thread: streamed, throttled, and never lost.

Slack's streaming methods (`chat.startStream` / `appendStream` / `stopStream`) show the answer
as it is written. Writes are coalesced so one message gets at most one write per `interval`
(appendStream is Tier 4, chat.update Tier 3). When streaming is unavailable, or a stream
expires (`message_not_in_streaming_state`, after about five minutes), the same message is
finished with `chat.update` instead: the user always gets the whole answer.

Every call keeps to Slack's rate limits (`SlackPacer`): a write waits for room, and the text
arriving meanwhile joins it. Under load the answer degrades instead of failing: the status line
is skipped when its budget is spent, and an answer that finds no `chat.startStream` budget for
its first write is "deferred": collected, then posted whole by `finish()`. A 429 all the same
is retried by slack_sdk's retry handler after `Retry-After`.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Sequence
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.rendering import fallback_text, markdown_blocks, split_markdown, split_markdown_pieces
from bot.slack_pacing import SlackPacer

__all__ = ["SlackReply", "strip_markers"]

log = logging.getLogger("bot.reply")

#: Errors meaning "this workspace or app cannot stream": fall back to post + update.
_NO_STREAMING = {
    "unknown_method",
    "not_allowed_token_type",
    "missing_scope",
    "feature_not_enabled",
    "method_deprecated",
    "invalid_arguments",
    "not_in_streaming_beta",
}
_STREAM_GONE = {"message_not_in_streaming_state", "message_not_found", "cant_update_message"}
_MARKER = re.compile(r"【[^】]*】")


def strip_markers(text: str) -> tuple[str, str]:
    """Removes citation markers; returns (safe text, held-back tail of an unclosed marker)."""
    text = _MARKER.sub("", text)
    start = text.rfind("【")
    if start == -1:
        return text, ""
    return text[:start], text[start:]


class SlackReply:
    def __init__(
        self,
        client: AsyncWebClient,
        *,
        channel: str,
        thread_ts: str,
        user_id: str | None,
        team_id: str | None,
        pacer: SlackPacer | None = None,
        interval: float = 0.7,
        max_chars: int = 11_000,
        timeout: float = 10.0,
    ) -> None:
        self._client = client
        self._pacer = pacer or SlackPacer(limits={})
        self._channel, self._thread_ts = channel, thread_ts
        self._user_id, self._team_id = user_id, team_id
        self._interval, self._max_chars, self._timeout = interval, max_chars, timeout
        self._streaming = True
        #: No stream budget at the first write: nothing is written until finish() or fail().
        self.deferred = False
        self._ts: str | None = None  # the message being written
        self.message_ts: list[str] = []  # every message this answer used, in order
        self._shown = ""  # text already in the current message
        self._pending = ""  # text waiting for the next write
        self._held = ""  # an unfinished citation marker, kept back until it closes
        self._last_write = 0.0
        self._wake = asyncio.Event()
        self._pump: asyncio.Task[None] | None = None
        self._writing = False  # the pump is writing: let it finish, never cancel it
        self._stopping = False
        self.writes = 0

    @property
    def client(self) -> AsyncWebClient:
        return self._client

    @property
    def channel(self) -> str:
        return self._channel

    @property
    def thread_ts(self) -> str:
        return self._thread_ts

    # -- status -------------------------------------------------------------------------

    async def set_status(self, status: str) -> None:
        """The "is thinking…" line under the thread; a failure here never blocks the answer,
        and without budget it is skipped (the answer needs Slack's calls more)."""
        if not self._pacer.ready("assistant.threads.setStatus", self._channel):
            log.debug("setStatus skipped: its rate limit is spent")
            return
        try:
            async with asyncio.timeout(3):
                await self._client.assistant_threads_setStatus(
                    channel_id=self._channel, thread_ts=self._thread_ts, status=status
                )
        except (SlackApiError, TimeoutError, OSError) as exc:
            log.info("setStatus failed (ignored): %s", _error_code(exc))

    # -- writing ------------------------------------------------------------------------

    def append(self, markdown: str) -> None:
        """Queues streamed text; citation markers never reach Slack."""
        safe, self._held = strip_markers(self._held + markdown)
        if not safe:
            return
        self._pending += safe
        if self.deferred:
            return
        if self._pump is None and not self._stopping:
            self._pump = asyncio.create_task(self._run_pump(), name="slack reply pump")
        self._wake.set()

    async def finish(
        self, final_markdown: str | None = None, blocks: Sequence[dict[str, Any]] = ()
    ) -> None:
        """Writes what is left and ends the message.

        `final_markdown`, when given, is the answer as it should finally read (footnotes
        instead of citation markers); if it differs from what was streamed, the message is
        rewritten with it.
        """
        await self._stop_pump()
        streamed = self._shown + self._pending
        final = final_markdown if final_markdown is not None else streamed
        if self._ts is None and not self.message_ts:  # nothing written yet (or deferred)
            await self._post_whole(final or "_(no answer)_", blocks)
            return
        single_message = len(self.message_ts) <= 1
        if single_message and final != streamed and len(final) <= self._max_chars:
            self._pending = ""
            await self._end_current(blocks=())
            await self._rewrite(final, blocks)
            return
        await self._flush(last=True)
        await self._end_current(blocks=blocks, with_pending=True)

    async def fail(self, text: str) -> None:
        """Ends the answer with a short notice after whatever was already shown."""
        await self._stop_pump()
        if self._ts is None and not self.message_ts:  # nothing written yet (or deferred)
            await self._post_whole(f"{self._pending}\n\n{text}" if self._pending else text, ())
            return
        self._pending += f"\n\n{text}"
        await self._flush(last=True)
        await self._end_current(blocks=(), with_pending=True)

    # -- internals ----------------------------------------------------------------------

    async def _run_pump(self) -> None:
        while not self._stopping and not self.deferred:
            await self._wake.wait()
            self._wake.clear()
            wait = self._last_write + self._interval - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            method = self._next_method()
            if method != "chat.startStream" or self.message_ts:  # the first: see `_defer`
                # Waiting for room here lets the text arriving meanwhile join this write, and
                # stopping the pump here loses nothing: nothing has been sent.
                await self._pacer.wait(method, self._channel)
            # No `await` since the room was seen, so the write finds it. From here on the pump
            # is not cancelled: a write cut in half may have reached Slack unanswered (the
            # text would be sent twice, or a stream stopped twice).
            self._writing = True
            try:
                await self._flush(pumping=True)
            finally:
                self._writing = False

    async def _stop_pump(self) -> None:
        """Stops the pump; a write under way completes first, even if this task is cancelled
        meanwhile (shielded). A write that failed raises here, once."""
        pump, self._pump = self._pump, None
        if pump is None:
            return
        self._stopping = True
        if not self._writing:
            pump.cancel()  # waiting for text, the interval or room: nothing is lost
        try:
            await asyncio.shield(pump)
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise  # this task is cancelled, not (only) the pump

    async def _flush(self, *, last: bool = False, pumping: bool = False) -> None:
        """Writes the pending text. `last`: the answer ends next, so a tail that fits into
        the current stream is left for `_end_current` (stopStream carries it: one call less).
        `pumping`: text that arrived during a write waits for the pump's next round if Slack
        has no room now (the pump waits for room where it can be stopped)."""
        while self._pending:
            if self._defer():
                return
            if pumping and not self._pacer.ready(self._next_method(), self._channel):
                self._wake.set()
                return
            room = self._max_chars - len(self._shown)
            if last and self._streaming and self._ts is not None and len(self._pending) <= room:
                return
            if room <= 0 or (len(self._pending) > room and self._ts is not None):
                await self._end_current(blocks=())
                continue
            if len(self._pending) <= room:
                piece = self._pending
                await self._write(piece)
                # append() may have added text while the write was in flight: keep it.
                self._pending = self._pending[len(piece) :]
                continue
            # Too long for one message: send what fits, closing an open code fence, and
            # reopen that fence at the start of the next message.
            first, *rest = split_markdown_pieces(self._pending, room)
            await self._write(first.prefix + first.body + first.suffix)
            remainder = self._pending[len(first.body) :]
            self._pending = (rest[0].prefix if rest else "") + remainder

    def _defer(self) -> bool:
        """Whether to write nothing until the end: decided at the first write, which would
        start a stream that has no budget now. Checked right before the call (no `await` in
        between), so a budget seen here is still there when the call is made."""
        if not self.deferred and self._streaming and self._ts is None and not self.message_ts:
            if not self._pacer.ready("chat.startStream", self._channel):
                log.info("no chat.startStream budget: the answer is posted whole at its end")
                self.deferred = True
        return self.deferred

    def _next_method(self) -> str:
        if self._streaming:
            return "chat.startStream" if self._ts is None else "chat.appendStream"
        return "chat.postMessage" if self._ts is None else "chat.update"

    async def _write(self, piece: str) -> None:
        self._last_write = time.monotonic()
        if self._streaming:
            try:
                await self._stream_write(piece)
                return
            except SlackApiError as exc:
                code = _error_code(exc)
                if code not in _NO_STREAMING | _STREAM_GONE:
                    raise
                log.info("streaming unavailable (%s); continuing with chat.update", code)
                self._streaming = False
        await self._update_write(piece)

    async def _stream_write(self, piece: str) -> None:
        if self._ts is None:
            kwargs: dict[str, Any] = {}
            if not self._channel.startswith("D"):
                kwargs = {"recipient_user_id": self._user_id, "recipient_team_id": self._team_id}
            response = await self._call(
                "chat.startStream",
                self._client.chat_startStream,
                channel=self._channel,
                thread_ts=self._thread_ts,
                markdown_text=piece,
                **kwargs,
            )
            self._begin(str(response["ts"]))
        else:
            await self._call(
                "chat.appendStream",
                self._client.chat_appendStream,
                channel=self._channel,
                ts=self._ts,
                markdown_text=piece,
            )
        self._shown += piece

    async def _update_write(self, piece: str) -> None:
        text = self._shown + piece
        if self._ts is None:
            response = await self._call(
                "chat.postMessage",
                self._client.chat_postMessage,
                channel=self._channel,
                thread_ts=self._thread_ts,
                text=fallback_text(text),
                blocks=markdown_blocks(text),
            )
            self._begin(str(response["ts"]))
        else:
            await self._call(
                "chat.update",
                self._client.chat_update,
                channel=self._channel,
                ts=self._ts,
                text=fallback_text(text),
                blocks=markdown_blocks(text),
            )
        self._shown = text

    async def _end_current(
        self, *, blocks: Sequence[dict[str, Any]], with_pending: bool = False
    ) -> None:
        """Closes the current message (stopStream, or a last update carrying `blocks`).

        `with_pending`: the rest of the answer (what `_flush(last=True)` left) goes with it.
        It leaves `_pending` only once Slack has it, so if the close fails, `fail()` still
        shows it before its notice.
        """
        tail = self._pending if with_pending else ""
        if self._ts is None:
            if blocks or tail:
                await self._post_whole(tail, blocks)
                self._pending = self._pending[len(tail) :]
            return
        needs_update = bool(blocks or tail)
        if self._streaming:
            try:
                extra: dict[str, Any] = {"blocks": list(blocks)} if blocks else {}
                if tail:
                    extra["markdown_text"] = tail
                await self._call(
                    "chat.stopStream",
                    self._client.chat_stopStream,
                    channel=self._channel,
                    ts=self._ts,
                    **extra,
                )
                needs_update = False
            except SlackApiError as exc:
                if _error_code(exc) not in _STREAM_GONE:
                    raise
                log.info("stream expired; finishing the message with chat.update")
                self._streaming = False
                needs_update = True
        if needs_update:
            text = self._shown + tail
            await self._call(
                "chat.update",
                self._client.chat_update,
                channel=self._channel,
                ts=self._ts,
                text=fallback_text(text),
                blocks=[*markdown_blocks(text), *blocks],
            )
        self._pending = self._pending[len(tail) :]
        self._ts, self._shown = None, ""

    async def _rewrite(self, final: str, blocks: Sequence[dict[str, Any]]) -> None:
        ts = self.message_ts[-1]
        await self._call(
            "chat.update",
            self._client.chat_update,
            channel=self._channel,
            ts=ts,
            text=fallback_text(final),
            blocks=[*markdown_blocks(final), *blocks],
        )

    async def _post_whole(self, markdown: str, blocks: Sequence[dict[str, Any]]) -> None:
        pieces = split_markdown(markdown) if markdown else []
        for index, piece in enumerate(pieces or [""]):
            last = index == max(len(pieces) - 1, 0)
            body = [*markdown_blocks(piece), *(blocks if last else ())]
            response = await self._call(
                "chat.postMessage",
                self._client.chat_postMessage,
                channel=self._channel,
                thread_ts=self._thread_ts,
                text=fallback_text(piece) or "Sources",
                blocks=body,
            )
            self.message_ts.append(str(response["ts"]))

    def _begin(self, ts: str) -> None:
        self._ts = ts
        self._shown = ""
        self.message_ts.append(ts)

    async def _call(self, api_method: str, method: Any, **kwargs: Any) -> Any:
        # The wait for room is not the request's: it may take a minute under load. The client
        # paces the call again, and finds the room seen here (no `await` in between).
        await self._pacer.wait(api_method, self._channel)
        self.writes += 1
        async with asyncio.timeout(self._timeout * 4):  # includes 429 waits
            return await method(**kwargs)


def _error_code(exc: BaseException) -> str:
    if isinstance(exc, SlackApiError):
        return str(exc.response.get("error", "unknown"))
    return type(exc).__name__
