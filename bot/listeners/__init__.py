"""Slack listeners by surface; each module exposes `register(app, bot)`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from slack_bolt.async_app import AsyncApp

from bot.listeners import actions, agent, commands, events

if TYPE_CHECKING:
    from bot.app import Bot

__all__ = ["register_all"]


def register_all(app: AsyncApp, bot: Bot) -> None:
    events.register(app, bot)
    commands.register(app, bot)
    actions.register(app, bot)
    agent.register(app, bot)
