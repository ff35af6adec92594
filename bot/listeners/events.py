"""Mentions and messages: each becomes a queued message of its conversation.

Listeners return at once (Bolt has already acked); the conversation queue owns ordering.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from slack_bolt.async_app import AsyncApp, AsyncBoltContext

from bot.conversations import Incoming, ThreadKey
from bot.directory import is_dm

if TYPE_CHECKING:
    from bot.app import Bot

__all__ = ["from_bot", "incoming", "register"]

# Message subtypes that are a person saying something; edits, joins etc. are not.
_SPOKEN = {None, "file_share", "thread_broadcast"}


def register(app: AsyncApp, bot: Bot) -> None:
    @app.event("app_mention")
    async def on_mention(event: dict[str, Any], context: AsyncBoltContext) -> None:
        if from_bot(event):
            return
        thread_ts = event.get("thread_ts") or event["ts"]
        key = ThreadKey(_team(event, context), event["channel"], thread_ts)
        # Real app_mention events carry `files` when the message has some (slackapi/bolt-js
        # #2056), yet are documented and emulated without: only when the key is absent does
        # the worker look the message up (None), a call under Slack's tightest read limit.
        known = "files" in event
        await bot.conversations.enqueue(incoming(key, event, thread_ts, context, files_known=known))

    @app.event("message")
    async def on_message(event: dict[str, Any], context: AsyncBoltContext) -> None:
        if from_bot(event) or event.get("subtype") not in _SPOKEN:
            return
        await on_user_message(bot, event, context)


async def on_user_message(bot: Bot, event: dict[str, Any], context: AsyncBoltContext) -> None:
    """A user's message in a DM, or in a channel thread the bot takes part in."""
    channel = event["channel"]
    team = _team(event, context)
    thread_ts = event.get("thread_ts")
    if is_dm(channel) or event.get("channel_type") == "im":
        key = ThreadKey(team, channel, thread_ts or "")
        if thread_ts and not await bot.conversations.follows(key):
            key = ThreadKey(team, channel, "")  # a reply under one of our DM answers
        await bot.conversations.enqueue(incoming(key, event, thread_ts or event["ts"], context))
        return
    if not thread_ts:
        return  # top-level channel chatter: only a mention starts a conversation
    if context.bot_user_id and f"<@{context.bot_user_id}>" in event.get("text", ""):
        return  # also delivered as app_mention, which answers it
    key = ThreadKey(team, channel, thread_ts)
    if await bot.conversations.follows(key):
        await bot.conversations.enqueue(incoming(key, event, thread_ts, context))


def from_bot(event: dict[str, Any]) -> bool:
    return bool(event.get("bot_id") or event.get("bot_profile")) or (
        event.get("subtype") == "bot_message"
    )


def incoming(
    key: ThreadKey,
    event: dict[str, Any],
    reply_thread_ts: str,
    context: AsyncBoltContext,
    *,
    files_known: bool = True,
) -> Incoming:
    bot_user_id = context.bot_user_id
    text = event.get("text") or ""
    if bot_user_id:
        text = re.sub(rf"<@{re.escape(bot_user_id)}>\s*", "", text)
    return Incoming(
        key=key,
        reply_thread_ts=reply_thread_ts,
        message_ts=event["ts"],
        user_id=event.get("user") or "",
        text=text.strip(),
        files=list(event.get("files") or []) if files_known else None,
        event_id=context.get("event_id"),
    )


def _team(event: dict[str, Any], context: AsyncBoltContext) -> str:
    return str(event.get("team") or context.team_id or "")
