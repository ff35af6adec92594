"""Handlers that need Slack: who a user is, and reminders posted into the thread."""

from __future__ import annotations

from typing import Any

from bot.functions.registry import FunctionContext, Handler
from bot.reminders import Reminders, parse_when

__all__ = ["get_slack_user", "reminder_handler"]

# What a colleague could see on a profile anyway; never e-mail, phone or tokens.
_SAFE_PROFILE = ("real_name", "display_name", "title", "pronouns")


async def get_slack_user(ctx: FunctionContext, user_id: str) -> dict[str, Any]:
    """Public profile facts about a Slack user: name, title, time zone.

    Args:
        user_id: The Slack user id, e.g. U012AB3CD (as in a <@U012AB3CD> mention).
    """
    if ctx.client is None:
        return {"error": "Slack users can only be looked up inside Slack"}
    response = await ctx.client.users_info(user=user_id.strip("<@>"))
    user = response["user"]
    profile = user.get("profile", {})
    found: dict[str, Any] = {
        "id": user["id"],
        "name": user.get("name"),
        "time_zone": user.get("tz"),
        "is_bot": user.get("is_bot", False),
    }
    found.update({key: profile[key] for key in _SAFE_PROFILE if profile.get(key)})
    return found


def reminder_handler(reminders: Reminders) -> Handler:
    """`schedule_reminder`, bound to the bot's reminder service."""

    async def schedule_reminder(ctx: FunctionContext, text: str, when: str) -> dict[str, Any]:
        """Schedule a reminder that the bot posts into this conversation later.

        Args:
            text: What to remind about, as it should be posted.
            when: An ISO 8601 time with offset, or a delay such as "in 10 minutes".
        """
        if ctx.channel_id is None or ctx.team_id is None:
            return {"error": "reminders can only be scheduled inside Slack"}
        try:
            due = parse_when(when, ctx.now())
        except ValueError as exc:
            return {"error": str(exc)}
        if due <= ctx.now():
            return {"error": f"{due.isoformat()} is in the past"}
        row = await reminders.schedule(
            team_id=ctx.team_id,
            channel_id=ctx.channel_id,
            thread_ts=ctx.thread_ts,
            user_id=ctx.user_id,
            text=text,
            due=due,
        )
        return {"scheduled": True, "id": row.id, "at": due.isoformat()}

    return schedule_reminder
