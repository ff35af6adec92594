"""Slack's agent surfaces: the agent DM (`app_home_opened` on the messages tab,
`app_context_changed`) and the legacy assistant threads (`assistant_thread_started`), the
latter through Bolt's `Assistant` middleware."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from slack_bolt.async_app import AsyncApp, AsyncAssistant, AsyncBoltContext, AsyncSay
from slack_bolt.context.set_suggested_prompts.async_set_suggested_prompts import (
    AsyncSetSuggestedPrompts,
)
from slack_sdk.errors import SlackApiError

from bot.conversations import ThreadKey
from bot.listeners.events import from_bot, on_user_message

if TYPE_CHECKING:
    from bot.app import Bot

__all__ = ["SUGGESTED_PROMPTS", "register"]

log = logging.getLogger("bot.agent")

SUGGESTED_PROMPTS = [
    {"title": "Solve an equation", "message": "Solve 3x + 11 = 14 and explain each step."},
    {"title": "What can you do?", "message": "What can you help me with?"},
    {"title": "Plot a function", "message": "Plot y = x^2 - 4x + 3 and mark its roots."},
]


def register(app: AsyncApp, bot: Bot) -> None:
    @app.event("app_home_opened")
    async def on_home_opened(event: dict[str, Any], context: AsyncBoltContext) -> None:
        if event.get("tab") != "messages":
            return
        try:
            await context.client.assistant_threads_setSuggestedPrompts(
                channel_id=event["channel"], prompts=SUGGESTED_PROMPTS
            )
        except SlackApiError as exc:
            log.info("suggested prompts not set: %s", exc.response.get("error"))

    @app.event("app_context_changed")
    async def on_context_changed(event: dict[str, Any]) -> None:
        log.info("agent context changed in %s", event.get("channel"))

    assistant = AsyncAssistant()

    @assistant.thread_started
    async def on_thread_started(
        say: AsyncSay, set_suggested_prompts: AsyncSetSuggestedPrompts, event: dict[str, Any]
    ) -> None:
        thread = event["assistant_thread"]
        team = (thread.get("context") or {}).get("team_id") or ""
        await bot.conversations.link(
            ThreadKey(team, thread["channel_id"], thread["thread_ts"]), create=True
        )
        await say("Hi! Ask me anything, or pick a suggestion below.")
        await set_suggested_prompts(prompts=SUGGESTED_PROMPTS)

    @assistant.user_message
    async def on_assistant_message(payload: dict[str, Any], context: AsyncBoltContext) -> None:
        if not from_bot(payload):
            await on_user_message(bot, payload, context)

    app.use(assistant)
