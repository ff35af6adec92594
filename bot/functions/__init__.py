"""Internal function handlers and the registry that resolves the model's calls to them."""

from __future__ import annotations

from typing import TYPE_CHECKING

from bot.functions.clock import get_current_time
from bot.functions.registry import FunctionContext, FunctionRegistry
from bot.functions.slack import get_slack_user, reminder_handler

if TYPE_CHECKING:
    from bot.reminders import Reminders

__all__ = ["FunctionContext", "FunctionRegistry", "builtin_functions"]


def builtin_functions(
    *, reminders: Reminders | None = None, timeout: float = 10.0
) -> FunctionRegistry:
    """A registry holding every built-in handler (`schedule_reminder` needs the bot's
    reminder service; without one, as in the terminal chat, it explains it is Slack-only)."""
    registry = FunctionRegistry(timeout=timeout)
    registry.register(get_current_time)
    registry.register(get_slack_user)
    registry.register(reminder_handler(reminders) if reminders else _reminders_unavailable)
    return registry


async def _reminders_unavailable(ctx: FunctionContext, text: str, when: str) -> dict[str, str]:
    """Schedule a reminder that the bot posts into this conversation later.

    Args:
        text: What to remind about, as it should be posted.
        when: An ISO 8601 time with offset, or a delay such as "in 10 minutes".
    """
    return {"error": "reminders can only be scheduled inside Slack"}


_reminders_unavailable.__name__ = "schedule_reminder"
