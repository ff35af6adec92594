"""get_current_time: the date and time in a time zone."""

from __future__ import annotations

from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from bot.functions.registry import FunctionContext

__all__ = ["get_current_time"]


async def get_current_time(ctx: FunctionContext, timezone: str = "UTC") -> dict[str, str]:
    """The current date and time in a time zone.

    Args:
        timezone: An IANA time zone name such as "Europe/Paris" or "America/New_York".
    """
    try:
        zone = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        return {"error": f"unknown time zone {timezone!r}; use an IANA name like Europe/Paris"}
    now = ctx.now().astimezone(zone)
    return {"timezone": timezone, "iso": now.isoformat(), "weekday": now.strftime("%A")}
