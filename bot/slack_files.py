"""Files people share in a conversation, taken into the engine as message attachments.

Slack serves `url_private_download` only with the bot token, and drops the header on
redirects, so the download follows redirects by hand. Every file goes to the conversation's
own engine thread (file_search; tables also to code_interpreter): nothing shared in one
thread or workspace is ever searched from another.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from assistants import Engine, EngineError

__all__ = ["SharedFiles", "TakenFile"]

log = logging.getLogger("bot.files")

_TABULAR = (".csv", ".tsv", ".xlsx", ".xls", ".json", ".parquet")
_MAX_REDIRECTS = 5


@dataclass(frozen=True, slots=True)
class TakenFile:
    file_id: str
    name: str
    tools: tuple[str, ...]


class SharedFiles:
    def __init__(self, *, engine: Engine, client: AsyncWebClient, token: str, max_bytes: int):
        self._engine, self._client, self._token, self._max_bytes = engine, client, token, max_bytes

    async def lookup(self, channel: str, thread_ts: str, message_ts: str) -> list[dict[str, Any]]:
        """The files of one message (`app_mention` events omit them)."""
        try:
            response = await self._client.conversations_replies(
                channel=channel,
                ts=thread_ts,
                oldest=message_ts,
                latest=message_ts,
                inclusive=True,
                limit=1,
            )
        except SlackApiError as exc:
            log.info("could not read the message's files: %s", exc.response.get("error"))
            return []
        messages: list[dict[str, Any]] = response.get("messages") or []
        for message in messages:
            if message.get("ts") == message_ts:
                return list(message.get("files") or [])
        return []

    async def take(self, files: list[dict[str, Any]]) -> tuple[list[TakenFile], list[str]]:
        """Downloads and stores each file; returns what was taken and a note per refusal."""
        taken, problems = [], []
        for file in files:
            name = str(file.get("name") or file.get("title") or "file")
            size = int(file.get("size") or 0)
            if size > self._max_bytes:
                problems.append(f"`{name}` is larger than {self._max_bytes // 2**20} MB")
                continue
            url = file.get("url_private_download") or file.get("url_private")
            if not url:
                problems.append(f"`{name}` cannot be downloaded")
                continue
            try:
                data = await self._download(str(url))
                stored = await self._engine.files.create_bytes(
                    name, "assistants", data, mimetype=file.get("mimetype")
                )
            except (aiohttp.ClientError, TimeoutError, ValueError, EngineError) as exc:
                log.warning("taking %s failed: %s", name, exc)
                problems.append(f"`{name}` could not be read")
                continue
            tools = (
                ("file_search", "code_interpreter")
                if name.lower().endswith(_TABULAR)
                else ("file_search",)
            )
            taken.append(TakenFile(stored.id, name, tools))
        return taken, problems

    async def _download(self, url: str) -> bytes:
        headers = {"Authorization": f"Bearer {self._token}"}
        timeout = aiohttp.ClientTimeout(total=120)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            for _ in range(_MAX_REDIRECTS):
                async with session.get(url, headers=headers, allow_redirects=False) as response:
                    if response.status in (301, 302, 303, 307, 308):
                        url = response.headers["Location"]
                        continue
                    response.raise_for_status()
                    if response.content_type == "text/html":
                        raise ValueError("Slack answered with a sign-in page (missing files:read?)")
                    data = bytearray()
                    async for chunk in response.content.iter_chunked(256 * 1024):
                        data += chunk
                        if len(data) > self._max_bytes:
                            raise ValueError("the file is larger than the limit")
                    return bytes(data)
        raise ValueError("too many redirects")
